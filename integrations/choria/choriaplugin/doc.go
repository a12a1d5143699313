// Package choriaplugin is a Choria Provisioning Target Resolver plugin that asks
// the provtarget binary (through package provtargetexec) where the provisioning
// brokers are.
//
// Its code is behind the build tag `choria`, because it imports go-choria and
// logrus, which this module does not require: without the tag the package is
// empty and the module builds with the standard library alone. Build Choria with
// GOFLAGS=-tags=choria (see integrations/choria/README.md):
//
//	# packager/user_plugins.yaml
//	provtarget: provtarget.example.net/integrations/choria/choriaplugin
//
// The plugin runs Binary (default /usr/bin/provtarget; set it at build time with
// -ldflags "-X provtarget.example.net/integrations/choria/choriaplugin.Binary=...").
package choriaplugin

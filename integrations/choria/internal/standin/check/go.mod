// Compiles and runs the Choria adapter (-tags choria) against the stand-ins.
module provtarget.example.net/choriacheck

go 1.19

require (
	github.com/choria-io/go-choria v0.0.0
	github.com/sirupsen/logrus v0.0.0
	provtarget.example.net/integrations/choria v0.0.0
)

replace (
	github.com/choria-io/go-choria => ../go-choria
	github.com/sirupsen/logrus => ../logrus
	provtarget.example.net/integrations/choria => ../../..
)

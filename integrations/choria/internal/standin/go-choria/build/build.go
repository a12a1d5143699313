// Package build stands in for go-choria's build package: the compiled-in
// provisioning settings the adapter reads.
package build

// ProvisionBrokerURLs are the compiled-in provisioning broker URLs.
var ProvisionBrokerURLs = ""

// ProvisionBrokerSRVDomain is the compiled-in SRV domain for provisioning brokers.
var ProvisionBrokerSRVDomain = ""

// ProvisionJWTFile is the compiled-in provisioning JWT path.
var ProvisionJWTFile = ""

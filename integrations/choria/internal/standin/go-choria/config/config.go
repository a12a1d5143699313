// Package config stands in for go-choria's config package: the fields and methods
// of Config the adapter uses.
package config

// Config is the server configuration.
type Config struct {
	// Identity is the server's identity.
	Identity string
	// ConfigFile is the main configuration file that was parsed.
	ConfigFile string

	rawOpts map[string]string
}

// NewConfigForTests returns an empty configuration.
func NewConfigForTests() *Config {
	return &Config{rawOpts: map[string]string{}}
}

// HasOption tells whether option was set by the configuration.
func (c *Config) HasOption(option string) bool {
	_, ok := c.rawOpts[option]
	return ok
}

// Option returns option's raw value, or deflt.
func (c *Config) Option(option string, deflt string) string {
	if v, ok := c.rawOpts[option]; ok {
		return v
	}
	return deflt
}

// SetOption sets option's raw value.
func (c *Config) SetOption(option string, value string) {
	c.rawOpts[option] = value
}

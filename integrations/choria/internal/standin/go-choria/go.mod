// A stand-in for type-checking only: see ../README.md.
module github.com/choria-io/go-choria

go 1.19

require github.com/sirupsen/logrus v0.0.0

replace github.com/sirupsen/logrus => ../logrus

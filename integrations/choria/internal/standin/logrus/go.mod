// A stand-in for type-checking only: see ../README.md.
module github.com/sirupsen/logrus

go 1.19

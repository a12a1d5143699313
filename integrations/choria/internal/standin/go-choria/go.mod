// A stand-in for type-checking only: see ../README.md.
module github.com/choria-io/go-choria

go 1.19

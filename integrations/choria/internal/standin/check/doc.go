// Package choriacheck compiles the Choria adapter (build tag `choria`) against
// the stand-ins and runs it against the real provtarget binary in its tests.
package choriacheck

// Package pkg is the root of Taskforge's shared libraries. It holds no code of its
// own: each subdirectory is a package with one responsibility.
package pkg

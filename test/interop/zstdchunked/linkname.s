// Empty on purpose: lets main.go declare bodyless functions bound with //go:linkname to the
// unexported manifest reader of containers/storage (interop-notes.md).

// One reference syntax for every command: `oci:DIR[:TAG]` or `docker://[HOST[:PORT]/]NAME[:TAG][@DIGEST]`.
// Opens the matching ImageSource / ImageDestination so callers never branch on the transport.
//
// Ownership: the `oci:` half is implemented in src/oci/layout.ts (OciLayoutSource/OciLayoutDestination),
// the `docker:` half in src/registry/ (RegistryImageSource/RegistryImageDestination, parseDockerReference).
export {};

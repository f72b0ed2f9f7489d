// docker:// images as ImageSource / ImageDestination. (Scaffold: the registry client replaces the bodies.)
import type { ImageDestination, ImageSource } from '../oci/store.js';
import type { Platform } from '../oci/types.js';

export interface RegistryOptions {
  /** Platform to pick from an index when a single image is wanted (default: the host). */
  platform?: Platform;
  /** Use http:// (default for localhost and 127.0.0.1, as Docker does). */
  plainHttp?: boolean;
  /** Accept TLS certificates that do not verify. */
  insecure?: boolean;
}

export async function openRegistrySource(ref: string, _opts: RegistryOptions = {}): Promise<ImageSource> {
  throw new Error(`docker:// transport is not available yet: ${ref}`);
}

export async function openRegistryDestination(ref: string, _opts: RegistryOptions = {}): Promise<ImageDestination> {
  throw new Error(`docker:// transport is not available yet: ${ref}`);
}

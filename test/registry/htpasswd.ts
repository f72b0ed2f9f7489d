// A bcrypt htpasswd line for Distribution's htpasswd auth, made at test time with Debian's
// python3 `crypt` module (glibc's libcrypt does bcrypt; `openssl passwd` does not).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

export async function htpasswdLine(user: string, password: string): Promise<string> {
  const script = 'import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))';
  const { stdout } = await run('/usr/bin/python3', ['-W', 'ignore', '-c', script, password]);
  const hash = stdout.trim();
  if (!/^\$2[aby]\$/.test(hash)) throw new Error(`python3 crypt did not produce a bcrypt hash: ${hash}`);
  return `${user}:${hash}\n`;
}

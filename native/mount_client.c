// `starling mount` without starting Node, when the host's spare mount daemon is there
// (src/mount/host-spare.ts): bin/starling runs this for `mount`. Starting Node and loading the CLI
// takes ~0.13 s of every mount on the benchmark machine, a quarter of a warm mount; this hands the
// spare the arguments, directory, umask and environment over its socket, as claimSpare does, and
// waits until the mount is ready. The spare parses the arguments (a wrong one is answered with the
// message and exit code `starling mount` gives). With no spare, a refusal, an answer that is not
// understood, or an option only the JS command handles, it runs the JS command (exec node).
//
// usage: starling-mount SCRIPT mount ARGS...   (SCRIPT: bin/starling.js)
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

extern char **environ;

/** How long the spare has to take or refuse the mount (CLAIM_ANSWER_MS of host-spare.ts). */
#define CLAIM_ANSWER_MS 10000

static char **js_argv;

/** Runs the JS command with the same arguments: `node SCRIPT mount ARGS...`. */
static void run_js(void) {
  execvp("node", js_argv);
  fprintf(stderr, "starling: cannot run node: %s\n", strerror(errno));
  exit(127);
}

/* A growing buffer for the request. */
typedef struct {
  char *data;
  size_t len, cap;
} buf_t;

static void put(buf_t *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->data = realloc(b->data, b->cap);
    if (!b->data) run_js();
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = 0;
}

static void puts_(buf_t *b, const char *s) { put(b, s, strlen(s)); }

static void putf(buf_t *b, const char *fmt, ...) {
  char tmp[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  put(b, tmp, (size_t)n);
}

/** A JSON string of `n` bytes of `s`: quotes, backslashes and control bytes escaped, other bytes as they are. */
static void put_json_string(buf_t *b, const char *s, size_t n) {
  puts_(b, "\"");
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      put(b, e, 2);
    } else if (c < 0x20) {
      putf(b, "\\u%04x", c);
    } else {
      put(b, (const char *)&c, 1);
    }
  }
  puts_(b, "\"");
}

/** The Node binary `node` runs from PATH, as a real path; NULL if there is none. */
static char *find_node(void) {
  const char *path = getenv("PATH");
  if (!path) return NULL;
  char candidate[PATH_MAX];
  for (const char *p = path; *p;) {
    const char *end = strchr(p, ':');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n > 0 && n + 6 < sizeof candidate) {
      memcpy(candidate, p, n);
      memcpy(candidate + n, "/node", 6);
      if (access(candidate, X_OK) == 0) return realpath(candidate, NULL);
    }
    p += n;
    if (*p == ':') p++;
  }
  return NULL;
}

/* ---- reading the spare's answers: one JSON object a line; only the fields used here are read ---- */

typedef struct {
  const char *p, *end;
} cursor_t;

static void skip_ws(cursor_t *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n')) c->p++;
}

static void put_utf8(buf_t *b, unsigned cp) {
  char o[4];
  if (cp < 0x80) {
    o[0] = (char)cp;
    put(b, o, 1);
  } else if (cp < 0x800) {
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    put(b, o, 2);
  } else if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[2] = (char)(0x80 | (cp & 0x3F));
    put(b, o, 3);
  } else {
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    put(b, o, 4);
  }
}

static int hex4(const char *s, unsigned *out) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char h = s[i];
    v <<= 4;
    if (h >= '0' && h <= '9') v |= (unsigned)(h - '0');
    else if (h >= 'a' && h <= 'f') v |= (unsigned)(h - 'a' + 10);
    else if (h >= 'A' && h <= 'F') v |= (unsigned)(h - 'A' + 10);
    else return -1;
  }
  *out = v;
  return 0;
}

/** Reads a JSON string at the cursor into `out` (decoded; may be NULL to skip). 0, or -1 if it is not one. */
static int read_string(cursor_t *c, buf_t *out) {
  if (c->p >= c->end || *c->p != '"') return -1;
  c->p++;
  while (c->p < c->end && *c->p != '"') {
    char ch = *c->p++;
    if (ch != '\\') {
      if (out) put(out, &ch, 1);
      continue;
    }
    if (c->p >= c->end) return -1;
    char e = *c->p++;
    const char *simple = strchr("\"\\/bfnrt", e);
    if (simple && e) {
      const char map[] = "\"\\/\b\f\n\r\t";
      if (out) put(out, &map[simple - "\"\\/bfnrt"], 1);
    } else if (e == 'u') {
      unsigned cp;
      if (c->end - c->p < 4 || hex4(c->p, &cp) < 0) return -1;
      c->p += 4;
      // A surrogate pair (JSON.stringify writes characters outside the BMP as they are, but be exact).
      if (cp >= 0xD800 && cp < 0xDC00 && c->end - c->p >= 6 && c->p[0] == '\\' && c->p[1] == 'u') {
        unsigned lo;
        if (hex4(c->p + 2, &lo) == 0 && lo >= 0xDC00 && lo < 0xE000) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          c->p += 6;
        }
      }
      if (out) put_utf8(out, cp);
    } else {
      return -1;
    }
  }
  if (c->p >= c->end) return -1;
  c->p++;
  return 0;
}

/** Skips one JSON value (any kind). 0, or -1 if there is none. */
static int skip_value(cursor_t *c) {
  skip_ws(c);
  if (c->p >= c->end) return -1;
  if (*c->p == '"') return read_string(c, NULL);
  if (*c->p == '{' || *c->p == '[') {
    char close = *c->p == '{' ? '}' : ']';
    c->p++;
    skip_ws(c);
    if (c->p < c->end && *c->p == close) {
      c->p++;
      return 0;
    }
    for (;;) {
      if (close == '}') {
        skip_ws(c);
        if (read_string(c, NULL) < 0) return -1;
        skip_ws(c);
        if (c->p >= c->end || *c->p++ != ':') return -1;
      }
      if (skip_value(c) < 0) return -1;
      skip_ws(c);
      if (c->p >= c->end) return -1;
      if (*c->p == ',') {
        c->p++;
        continue;
      }
      if (*c->p++ == close) return 0;
      return -1;
    }
  }
  // A number, true, false or null.
  const char *start = c->p;
  while (c->p < c->end && strchr(",}] \t\r\n", *c->p) == NULL) c->p++;
  return c->p > start ? 0 : -1;
}

/** One answer of the spare: which of its keys it has, and the values used here. */
typedef struct {
  int accepted, ready, progress, refused, error;
  long pid, exit_code;
  buf_t message, mountpoint, log;
} answer_t;

static long read_long(cursor_t *c) {
  skip_ws(c);
  char *end;
  long v = strtol(c->p, &end, 10);
  if (end == c->p) return -1;
  c->p = end;
  return v;
}

/** Parses a line of the spare into `a`. 0, or -1 if it is not a JSON object. */
static int parse_answer(const char *line, size_t n, answer_t *a) {
  cursor_t c = {line, line + n};
  skip_ws(&c);
  if (c.p >= c.end || *c.p++ != '{') return -1;
  skip_ws(&c);
  if (c.p < c.end && *c.p == '}') return 0;
  for (;;) {
    buf_t key = {0};
    skip_ws(&c);
    if (read_string(&c, &key) < 0) return -1;
    skip_ws(&c);
    if (c.p >= c.end || *c.p++ != ':') return -1;
    skip_ws(&c);
    const char *k = key.data ? key.data : "";
    int ok = 0;
    if (strcmp(k, "accepted") == 0) ok = (a->accepted = 1, (a->pid = read_long(&c)) >= 0 ? 0 : -1);
    else if (strcmp(k, "exitCode") == 0) ok = (a->exit_code = read_long(&c)) >= 0 ? 0 : -1;
    else if (strcmp(k, "error") == 0) ok = (a->error = 1, read_string(&c, &a->message));
    else if (strcmp(k, "refused") == 0) ok = (a->refused = 1, skip_value(&c));
    else if (strcmp(k, "mountpoint") == 0) ok = read_string(&c, &a->mountpoint);
    else if (strcmp(k, "log") == 0) ok = read_string(&c, &a->log);
    else if (strcmp(k, "ready") == 0) ok = (a->ready = 1, skip_value(&c));
    else if (strcmp(k, "progress") == 0) ok = (a->progress = 1, skip_value(&c));
    else ok = skip_value(&c);
    free(key.data);
    if (ok < 0) return -1;
    skip_ws(&c);
    if (c.p >= c.end) return -1;
    if (*c.p == ',') {
      c.p++;
      continue;
    }
    return *c.p == '}' ? 0 : -1;
  }
}

static void free_answer(answer_t *a) {
  free(a->message.data);
  free(a->mountpoint.data);
  free(a->log.data);
}

/** Handled by the JS command only: options a spare does not take, and help. */
static int js_only(int argc, char **argv) {
  static const char *const options[] = {"--foreground", "--no-spare", "--spare", "--host-spare", "--help", "-h", NULL};
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--") == 0) break;
    for (const char *const *o = options; *o; o++)
      if (strcmp(argv[i], *o) == 0) return 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 3 || strcmp(argv[2], "mount") != 0) {
    fprintf(stderr, "usage: starling-mount SCRIPT mount ARGS... (run by bin/starling)\n");
    return 2;
  }
  js_argv = calloc((size_t)argc + 1, sizeof *js_argv);
  if (!js_argv) return 1;
  js_argv[0] = "node";
  for (int i = 1; i < argc; i++) js_argv[i] = argv[i];
  int nargs = argc - 3;
  char **args = argv + 3;
  if (js_only(nargs, args)) run_js();

  // The program as the spare knows its own (host-spare.ts thisProgram): Node and script by real path.
  char *node = find_node();
  char *script = realpath(argv[1], NULL);
  struct stat node_stat;
  if (!node || !script || stat(node, &node_stat) != 0) run_js();
  char cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd)) run_js();
  mode_t mask = umask(0);
  umask(mask);

  const char *run_dir = getenv("STARLING_RUN_DIR");
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  int n = snprintf(addr.sun_path, sizeof addr.sun_path, "%s/spare/spare.sock", run_dir && *run_dir ? run_dir : "/run/starling");
  if (n < 0 || (size_t)n >= sizeof addr.sun_path) run_js();
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) run_js();

  buf_t req = {0};
  puts_(&req, "{\"op\":\"mount\",\"program\":{\"node\":");
  put_json_string(&req, node, strlen(node));
  putf(&req, ",\"nodeFile\":\"%llu:%lld:%lld\",\"script\":", (unsigned long long)node_stat.st_ino, (long long)node_stat.st_size, (long long)node_stat.st_mtim.tv_sec);
  put_json_string(&req, script, strlen(script));
  puts_(&req, ",\"execArgv\":[]},\"args\":[");
  for (int i = 0; i < nargs; i++) {
    if (i) puts_(&req, ",");
    put_json_string(&req, args[i], strlen(args[i]));
  }
  puts_(&req, "],\"cwd\":");
  put_json_string(&req, cwd, strlen(cwd));
  putf(&req, ",\"umask\":%u,\"env\":{", (unsigned)mask);
  int first = 1;
  for (char **e = environ; *e; e++) {
    const char *eq = strchr(*e, '=');
    if (!eq || eq == *e) continue;
    if (!first) puts_(&req, ",");
    first = 0;
    put_json_string(&req, *e, (size_t)(eq - *e));
    puts_(&req, ":");
    put_json_string(&req, eq + 1, strlen(eq + 1));
  }
  puts_(&req, "}}\n");
  for (size_t sent = 0; sent < req.len;) {
    ssize_t w = write(fd, req.data + sent, req.len - sent);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) run_js();
    sent += (size_t)w;
  }

  long pid = -1;
  buf_t log = {0}, mountpoint = {0}, line = {0};
  char chunk[4096];
  for (;;) {
    // Until the spare takes the mount it has CLAIM_ANSWER_MS to answer; then the mount takes what it takes.
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int ready = poll(&p, 1, pid < 0 ? CLAIM_ANSWER_MS : -1);
    if (ready < 0 && errno == EINTR) continue;
    ssize_t r = ready > 0 ? read(fd, chunk, sizeof chunk) : 0;
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      // The connection ended (or the spare kept silent) before an answer that settles the mount.
      if (pid < 0) run_js();
      fprintf(stderr, "starling: the mount daemon (pid %ld, the host's spare) exited before the mount was ready; see %s\n", pid, log.data ? log.data : "its log");
      return 1;
    }
    put(&line, chunk, (size_t)r);
    char *nl;
    while ((nl = memchr(line.data, '\n', line.len)) != NULL) {
      answer_t a = {0};
      int ok = parse_answer(line.data, (size_t)(nl - line.data), &a);
      size_t rest = line.len - (size_t)(nl + 1 - line.data);
      memmove(line.data, nl + 1, rest);
      line.len = rest;
      line.data[rest] = 0;
      if (ok < 0 && pid < 0) run_js(); // not the spare's answer: as for a spare that went away
      if (ok < 0) continue;
      if (a.accepted) {
        pid = a.pid;
        if (a.log.data) put(&log, a.log.data, a.log.len);
        if (a.mountpoint.data) put(&mountpoint, a.mountpoint.data, a.mountpoint.len);
      } else if (a.ready) {
        fprintf(stderr, "mounted at %s (daemon pid %ld; log %s)\n", mountpoint.data ? mountpoint.data : "", pid, log.data ? log.data : "");
        return 0;
      } else if (a.error) {
        fprintf(stderr, "starling: %s\n", a.message.data ? a.message.data : "mount failed");
        return a.exit_code > 0 ? (int)a.exit_code : 1;
      } else if (a.refused && pid < 0) {
        run_js();
      }
      free_answer(&a);
    }
  }
}

/**
 * A real registry for the tests (Debian's `docker-registry`) on a free loopback port, with or
 * without htpasswd auth, and a proxy in front of it that counts, breaks, tampers and asks for tokens.
 */
import { spawn } from "node:child_process"
import { execFileSync } from "node:child_process"
import { randomBytes } from "node:crypto"
import * as fs from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

/** A port nobody listens on right now. */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })

const bcryptAlphabet = "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

/** A bcrypt hash through the C library's crypt(3) (libxcrypt knows `$2b$`), as htpasswd -B makes. */
export const bcrypt = (password: string): string => {
  // the salt's last character carries 2 spare bits that must be zero: "." is 0
  const salt = Array.from(randomBytes(21), (b) => bcryptAlphabet[b % 64]).join("") + "."
  const hash = execFileSync("perl", ["-e", "print crypt($ARGV[0], $ARGV[1])", password, `$2b$05$${salt}`], { encoding: "utf8" })
  if (!hash.startsWith("$2b$05$")) throw new Error(`crypt(3) made no bcrypt hash here: ${hash}`)
  return hash
}

const waitFor = async (url: string, deadline: number): Promise<void> => {
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const request = http.get(url, (response) => {
        response.resume()
        resolve(response.statusCode === 200 || response.statusCode === 401)
      })
      request.on("error", () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`${url} did not come up`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

export interface Running {
  readonly host: string
  readonly port: number
  readonly stop: () => Promise<void>
}

/** A request in the registry's own access log. */
export interface Logged {
  readonly method: string
  readonly path: string
  readonly status: number
}

const accessLine = /"([A-Z]+) (\S+) HTTP\/[\d.]+" (\d{3}) /

/** The requests a registry's access log holds, in the order they were answered. */
export const loggedRequests = (log: string): Array<Logged> =>
  log.split("\n").flatMap((line) => {
    const match = accessLine.exec(line)
    return match === null ? [] : [{ method: match[1]!, path: match[2]!, status: Number(match[3]) }]
  })

/**
 * Start `docker-registry` on 127.0.0.1 with a temporary storage directory (and htpasswd users when
 * given). With `accessLog`, it logs every request it answers: `requests` reads them once every
 * request answered before the call is in the log (no proxy needed in between to count them).
 */
export const startRegistry = async (
  options: { readonly users?: Record<string, string>; readonly accessLog?: boolean } = {}
): Promise<Running & { readonly log: () => string; readonly requests: () => Promise<Array<Logged>> }> => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "blobchain-registry-"))
  const port = await freePort()
  const lines = [
    "version: 0.1",
    `log: { level: warn, accesslog: { disabled: ${options.accessLog !== true} } }`,
    `storage: { filesystem: { rootdirectory: ${JSON.stringify(path.join(dir, "storage"))} }, delete: { enabled: true } }`,
    `http: { addr: "127.0.0.1:${port}" }`
  ]
  if (options.users !== undefined) {
    const file = path.join(dir, "htpasswd")
    fs.writeFileSync(file, Object.entries(options.users).map(([user, pass]) => `${user}:${bcrypt(pass)}\n`).join(""))
    lines.push(`auth: { htpasswd: { realm: blobchain-test, path: ${JSON.stringify(file)} } }`)
  }
  fs.writeFileSync(path.join(dir, "config.yml"), lines.join("\n") + "\n")
  const logFile = path.join(dir, "registry.log")
  const out = fs.openSync(logFile, "w")
  const child = spawn("docker-registry", ["serve", path.join(dir, "config.yml")], { stdio: ["ignore", out, out] })
  fs.closeSync(out)
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()))
  try {
    await waitFor(`http://127.0.0.1:${port}/v2/`, Date.now() + 15_000)
  } catch (error) {
    child.kill("SIGKILL")
    throw new Error(`docker-registry did not start: ${fs.readFileSync(logFile, "utf8")}`, { cause: error })
  }
  return {
    host: `127.0.0.1:${port}`,
    port,
    log: () => fs.readFileSync(logFile, "utf8"),
    requests: async () => {
      if (options.accessLog !== true) throw new Error("the registry was started without its access log")
      // a request of our own, answered after every earlier one: once its line is there, so are theirs
      const marker = `/v2/?marker=${randomBytes(8).toString("hex")}`
      await waitFor(`http://127.0.0.1:${port}${marker}`, Date.now() + 15_000)
      for (let tries = 0; ; tries++) {
        const logged = loggedRequests(fs.readFileSync(logFile, "utf8"))
        const at = logged.findIndex((r) => r.path === marker)
        if (at !== -1) return logged.slice(0, at).filter((r) => !r.path.startsWith("/v2/?marker="))
        if (tries > 300) throw new Error(`the registry did not log ${marker}`)
        await new Promise((r) => setTimeout(r, 50))
      }
    },
    stop: async () => {
      child.kill("SIGTERM")
      await exited
      fs.rmSync(dir, { recursive: true, force: true })
    }
  }
}

/** One request the proxy saw. */
export interface Seen {
  readonly method: string
  readonly url: string
  status: number
}

/** A fault to inject into requests that match. */
export interface Fault {
  readonly method?: string
  readonly path: RegExp
  /** Answer with this status (e.g. 503), or cut the connection. */
  readonly kind: number | "reset"
  times: number
  /** Matching requests let through before the fault begins (none by default). */
  skip?: number
}

export interface Proxy extends Running {
  readonly seen: Array<Seen>
  readonly faults: Array<Fault>
  /** GETs of this blob get one byte flipped. */
  tamper: string | undefined
  /** Scopes the token endpoint was asked for. */
  readonly tokenScopes: Array<string>
  /** Told of each request as it arrives (its number, from 1), before any fault. */
  onRequest: ((count: number) => void) | undefined
}

/**
 * A proxy in front of the registry at `target`. With `bearer`, it demands tokens from its own
 * `/token` endpoint (basic credentials there when `bearer.users` is given) and checks their scopes.
 */
export const startProxy = async (
  target: number,
  options: { readonly bearer?: { readonly users?: Record<string, string> } } = {}
): Promise<Proxy> => {
  const port = await freePort()
  const tokens = new Map<string, ReadonlyArray<string>>()
  const state: Proxy = {
    host: `127.0.0.1:${port}`,
    port,
    seen: [],
    faults: [],
    tamper: undefined,
    tokenScopes: [],
    onRequest: undefined,
    stop: () => new Promise((resolve) => server.close(() => resolve()))
  }
  const token = (request: http.IncomingMessage, response: http.ServerResponse, url: URL) => {
    const users = options.bearer?.users
    if (users !== undefined) {
      const header = request.headers.authorization ?? ""
      const [user, pass] = Buffer.from(header.replace(/^Basic /, ""), "base64").toString("utf8").split(":")
      if (!header.startsWith("Basic ") || user === undefined || users[user] !== pass) {
        response.writeHead(401, { "content-type": "application/json" }).end(JSON.stringify({ details: "bad credentials" }))
        return
      }
    }
    const scopes = url.searchParams.getAll("scope")
    state.tokenScopes.push(...scopes)
    const value = randomBytes(12).toString("hex")
    tokens.set(value, scopes)
    response.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ token: value, expires_in: 300 }))
  }
  const allowed = (request: http.IncomingMessage, repository: string | undefined) => {
    if (repository === undefined) return (request.headers.authorization ?? "").startsWith("Bearer ")
    const granted = tokens.get((request.headers.authorization ?? "").replace(/^Bearer /, "")) ?? []
    const need = request.method === "GET" || request.method === "HEAD" ? "pull" : "push"
    const url = new URL(request.url ?? "/", "http://x")
    const from = url.searchParams.get("from")
    const has = (repo: string, action: string) =>
      granted.some((s) => s.startsWith(`repository:${repo}:`) && s.slice(`repository:${repo}:`.length).split(",").includes(action))
    return has(repository, need) && (from === null || has(from, "pull"))
  }
  const server = http.createServer((request, response) => {
    const url = new URL(request.url ?? "/", `http://${state.host}`)
    const seen: Seen = { method: request.method ?? "", url: request.url ?? "", status: 0 }
    state.seen.push(seen)
    state.onRequest?.(state.seen.length)
    response.on("finish", () => void (seen.status = response.statusCode))
    if (url.pathname === "/token") return token(request, response, url)
    const fault = state.faults.find((f) => {
      if (!(f.times > 0 && f.path.test(url.pathname) && (f.method === undefined || f.method === request.method))) return false
      if ((f.skip ?? 0) === 0) return true
      f.skip = f.skip! - 1
      return false
    })
    if (fault !== undefined) {
      fault.times--
      request.resume()
      if (fault.kind === "reset") {
        request.socket.destroy()
        return
      }
      response.writeHead(fault.kind, { "content-type": "application/json" }).end(JSON.stringify({ errors: [{ code: "INJECTED", message: "injected fault" }] }))
      return
    }
    if (options.bearer !== undefined) {
      const repository = /^\/v2\/(.+?)\/(?:blobs|manifests|tags)\//.exec(url.pathname)?.[1]
      if (!allowed(request, repository)) {
        request.resume()
        const scope = repository === undefined ? "" : `,scope="repository:${repository}:pull"`
        response.writeHead(401, {
          "content-type": "application/json",
          "www-authenticate": `Bearer realm="http://${state.host}/token",service="blobchain-test"${scope}`
        }).end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: "authentication required" }] }))
        return
      }
    }
    const headers = { ...request.headers }
    delete headers.authorization
    const upstream = http.request({ host: "127.0.0.1", port: target, method: request.method, path: request.url, headers }, (answer) => {
      const tampered = state.tamper !== undefined && request.method === "GET" && url.pathname.endsWith(`/blobs/${state.tamper}`)
      if (!tampered) {
        response.writeHead(answer.statusCode ?? 502, answer.headers)
        answer.pipe(response)
        return
      }
      const chunks: Array<Buffer> = []
      answer.on("data", (chunk: Buffer) => chunks.push(chunk))
      answer.on("end", () => {
        const body = Buffer.concat(chunks)
        const at = Math.floor(body.length / 2)
        body[at] = (body[at] ?? 0) ^ 0x01
        response.writeHead(answer.statusCode ?? 502, answer.headers).end(body)
      })
    })
    upstream.on("error", () => response.destroy())
    request.pipe(upstream)
  })
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve))
  return state
}

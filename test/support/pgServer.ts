/**
 * A PostgreSQL server of one's own: `initdb` in a temp dir (as user `postgres` when run as root),
 * listening on a free loopback port with a socket directory of its own; no system service is
 * used. For the tests (postgres.ts) and the benches.
 */
import { execFileSync } from "node:child_process"
import * as fs from "node:fs"
import * as net from "node:net"
import * as os from "node:os"
import * as path from "node:path"

/** A running server. */
export interface Server {
  readonly port: number
  readonly dir: string
}

const binDir = (): string => {
  const root = "/usr/lib/postgresql"
  const versions = fs.existsSync(root) ? fs.readdirSync(root).sort((a, b) => Number(b) - Number(a)) : []
  const found = versions.map((v) => path.join(root, v, "bin")).find((d) => fs.existsSync(path.join(d, "initdb")))
  if (found === undefined) throw new Error("PostgreSQL is not installed (apt-get install -y postgresql): the tests need its initdb and pg_ctl")
  return found
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.on("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

const asRoot = process.getuid?.() === 0

// as root, PostgreSQL refuses to run: its tools run as `postgres`, in a directory it owns
const run = (command: string, args: ReadonlyArray<string>): void => {
  const [file, argv] = asRoot ? ["runuser", ["-u", "postgres", "--", command, ...args]] : [command, args]
  execFileSync(file, argv, { stdio: ["ignore", "pipe", "pipe"], timeout: 120_000 })
}

/** Start a server. */
export const start = async (): Promise<Server> => {
  const bin = binDir()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "blobchain-pg-"))
  if (asRoot) {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim())
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim())
    fs.chownSync(dir, uid, gid)
  }
  const data = path.join(dir, "data")
  const sockets = path.join(dir, "sockets")
  run("mkdir", [sockets])
  run(path.join(bin, "initdb"), ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
  // another test file's server may take the port between the probe and the start: try again
  for (let attempt = 0; ; attempt++) {
    const port = await freePort()
    try {
      run(path.join(bin, "pg_ctl"), [
        "-D", data, "-l", path.join(dir, "log"), "-w", "-t", "120",
        "-o", `-c listen_addresses=127.0.0.1 -p ${port} -k ${sockets} -c fsync=off -c max_connections=200`,
        "start"
      ])
      return { port, dir }
    } catch (error) {
      if (attempt >= 3) throw new Error(`pg_ctl start: ${fs.readFileSync(path.join(dir, "log"), "utf8").slice(-2000)}`, { cause: error })
    }
  }
}

/** Stop a server and remove its files. */
export const stop = (server: Server): void => {
  try {
    run(path.join(binDir(), "pg_ctl"), ["-D", path.join(server.dir, "data"), "-m", "immediate", "-w", "stop"])
  } finally {
    fs.rmSync(server.dir, { recursive: true, force: true })
  }
}

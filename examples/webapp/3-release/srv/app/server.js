import { createServer } from "node:http"
import { readFileSync } from "node:fs"

const page = readFileSync(new URL("./public/index.html", import.meta.url))
createServer((_req, res) => res.end(page)).listen(8080)

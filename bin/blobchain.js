#!/usr/bin/env node
// The compiled command-line tool; `npm ci` builds dist/ through the prepare script.
import "../dist/cli/main.js"

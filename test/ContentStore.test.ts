import * as ContentStore from "../src/ContentStore.js"
import { contentStoreSuite } from "./conformance/contentStore.js"

contentStoreSuite("layerMemory", () => ContentStore.layerMemory)

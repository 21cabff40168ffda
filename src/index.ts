/**
 * blobchain: chains of filesystem snapshots into OCI image layers, once and safely.
 * Every module is a namespace. A service's module holds its tag, interface and errors
 * (`ContentStore.ContentStore` is the tag); each implementation has a module of its own, which
 * imports the service's and never the reverse (`LocalContentStore.layer({ root })`).
 */
export * as Applier from "./Applier.js"
export * as Base from "./Base.js"
export * as BlobMapper from "./BlobMapper.js"
export * as Blobchain from "./Blobchain.js"
export * as Blobs from "./Blobs.js"
export * as Build from "./Build.js"
export * as ContentIndex from "./ContentIndex.js"
export * as ContentStore from "./ContentStore.js"
export * as DiffPair from "./DiffPair.js"
export * as Differ from "./Differ.js"
export * as Digest from "./Digest.js"
export * as Image from "./Image.js"
export * as LocalContentStore from "./LocalContentStore.js"
export * as MemoryContentStore from "./MemoryContentStore.js"
export * as Metadata from "./Metadata.js"
export * as Mount from "./Mount.js"
export * as NativeSnapshotter from "./NativeSnapshotter.js"
export * as Oci from "./Oci.js"
export * as OverlaySnapshotter from "./OverlaySnapshotter.js"
export * as Progress from "./Progress.js"
export * as RefManager from "./RefManager.js"
export * as Registry from "./Registry.js"
export * as Snapshotter from "./Snapshotter.js"
export * as Source from "./Source.js"
export * as SqlBlobMapper from "./SqlBlobMapper.js"
export * as SqlContentIndex from "./SqlContentIndex.js"
export * as TarApplier from "./TarApplier.js"
export * as WalkingDiffer from "./WalkingDiffer.js"

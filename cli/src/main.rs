//! `cairn`: the one binary (see the library for the commands).

// Chunk-sized buffers come and go on every request; mimalloc reuses them instead of mapping and
// zeroing fresh pages each time, which showed up as a few per cent of a PUT's CPU.
//
// Built with mimalloc's `no_thp`: it would otherwise mark its arenas for transparent huge pages
// and return freed memory to the kernel in pieces, so the next touch of such a piece faulted in
// a whole 2 MiB page for the kernel to zero. Streaming chunk buffers through the allocator then
// spent most of a large GET's CPU zeroing pages (BENCHMARKS.md: 64 MiB GETs from about 210 to
// 800 MiB/s). On a kernel whose THP mode is `always` (not `madvise`), start the server with
// `MIMALLOC_ALLOW_THP=0` for the same effect.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    cairn::run()
}

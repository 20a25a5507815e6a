//! `cairn`: the one binary (see the library for the commands).

// Chunk-sized buffers come and go on every request; mimalloc reuses them instead of mapping and
// zeroing fresh pages each time, which showed up as a few per cent of a PUT's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    cairn::run()
}

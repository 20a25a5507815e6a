//! A small real file system for tests that fill a disk: an ext4 image in a file, loop-mounted
//! (needs root and `mkfs.ext4`, which is installed from e2fsprogs when missing). Where loop
//! devices are not available it falls back to a size-limited tmpfs, which runs out of space the
//! same way. Unmounted and removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A mounted small file system.
pub struct SmallFs {
    /// Where it is mounted.
    mount: PathBuf,
    /// What kind it is: `ext4 (loop)` or `tmpfs`.
    pub kind: &'static str,
    /// Holds the image and the mount point.
    _dir: tempfile::TempDir,
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Installs e2fsprogs when `mkfs.ext4` is missing (Debian; the tests run as root).
fn ensure_mkfs() -> Result<(), String> {
    if run(Command::new("sh").args(["-c", "command -v mkfs.ext4"])).is_ok() {
        return Ok(());
    }
    run(Command::new("apt-get").args(["install", "-y", "-qq", "e2fsprogs"]))
        .or_else(|_| {
            run(Command::new("apt-get").args(["update", "-qq"]))?;
            run(Command::new("apt-get").args(["install", "-y", "-qq", "e2fsprogs"]))
        })
        .map_err(|e| format!("mkfs.ext4 is missing and e2fsprogs could not be installed: {e}"))
}

impl SmallFs {
    /// A file system of `mib` MiB, empty. Panics (with what to do) when neither a loop mount
    /// nor a tmpfs mount is possible: these tests need root.
    pub fn new(mib: u64) -> SmallFs {
        let dir = tempfile::tempdir().expect("temp dir");
        let image = dir.path().join("fs.img");
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).expect("mount point");
        let ext4 = ensure_mkfs().and_then(|()| {
            let f = std::fs::File::create(&image).map_err(|e| e.to_string())?;
            f.set_len(mib << 20).map_err(|e| e.to_string())?;
            drop(f);
            // No blocks reserved for root (the tests run as root and must see the real end).
            run(Command::new("mkfs.ext4")
                .args(["-q", "-F", "-m", "0"])
                .arg(&image))?;
            run(Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(&mount))
        });
        let kind = match ext4 {
            Ok(()) => "ext4 (loop)",
            Err(loop_err) => {
                let _ = std::fs::remove_file(&image);
                run(Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
                    .arg(&mount))
                .unwrap_or_else(|tmpfs_err| {
                    panic!(
                        "cannot mount a small file system (run the tests as root): loop-mounted \
                         ext4: {loop_err}; tmpfs: {tmpfs_err}"
                    )
                });
                "tmpfs"
            }
        };
        SmallFs {
            mount,
            kind,
            _dir: dir,
        }
    }

    /// Its mount point.
    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// Bytes free on it now.
    pub fn free_bytes(&self) -> u64 {
        let st = rustix::fs::statvfs(&self.mount).expect("statvfs");
        st.f_bavail * st.f_frsize
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // Lazy: a store handle a background task still holds must not keep the mount (and a
        // loop device) around after the test.
        let _ = run(Command::new("umount").arg("-l").arg(&self.mount));
    }
}

/// Writes `path` until its file system has no byte left (1 MiB, then 4 KiB, then single-byte
/// writes), as a disk filled to the very end.
pub fn fill_to_the_end(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).expect("create the filler file");
    for size in [1 << 20, 4096, 1] {
        let block = vec![0x5a; size];
        while f.write_all(&block).is_ok() {}
    }
    let _ = f.sync_all();
}

//! Real file systems on block devices through FUSE: nbdfuse shows an NBD export (a URL, or a
//! server it starts, such as qemu-nbd in front of an iSCSI LUN) as `MNT/nbd`, and fuse2fs
//! mounts the ext4 file system on it.
#![allow(dead_code)] // not every test binary mounts file systems

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::tool_ok;

/// A background process that must be stopped: killed on drop if still running.
pub struct Bg(pub Child, pub &'static str);

impl Drop for Bg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Bg {
    /// Waits for the process to exit by itself (after an unmount), within `secs`.
    pub fn wait_exit(mut self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while self.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "{} did not exit", self.1);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Waits until `path` exists (a FUSE mount came up), within `secs`.
pub fn wait_for(path: &Path, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} did not appear",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// nbdfuse exposes an NBD export as MNT/nbd (FS is made ready for [`fuse2fs`]). `export` is
/// what follows the mount point on nbdfuse's command line: a URL, or `[ SERVER ARGS... ]`.
pub fn nbdfuse(export: &[&str], mnt: &Path, fs: &Path) -> Bg {
    std::fs::create_dir_all(mnt).unwrap();
    std::fs::create_dir_all(fs).unwrap();
    let nbdfuse = Command::new("nbdfuse")
        .arg(mnt)
        .args(export)
        .stdout(Stdio::null())
        .spawn()
        .expect("nbdfuse (Debian: libnbd-bin, fuse3)");
    let nbdfuse = Bg(nbdfuse, "nbdfuse");
    wait_for(&mnt.join("nbd"), 30);
    nbdfuse
}

/// Mounts the ext4 file system in `image` on `fs`.
pub fn fuse2fs(image: &Path, fs: &Path) -> Bg {
    let child = Command::new("fuse2fs")
        .args(["-f", "-o", "fakeroot"])
        .arg(image)
        .arg(fs)
        .stdout(Stdio::null())
        .spawn()
        .expect("fuse2fs (Debian: fuse2fs)");
    let bg = Bg(child, "fuse2fs");
    wait_for(&fs.join("lost+found"), 30);
    bg
}

/// Unmounts a FUSE mount and waits for its process to finish (fuse2fs flushes on the way).
pub fn unmount(mnt: &Path, fuse: Bg) {
    tool_ok("fusermount3", &["-u", mnt.to_str().unwrap()], 60);
    fuse.wait_exit(60);
}

/// Checks the ext4 file system in `image`: e2fsck finds nothing to fix, and mounted on `fs`,
/// every file of `files` (path under the mount, bytes) reads back; then unmounts it. `when`
/// names the moment in failure messages.
pub fn check_file_system(image: &Path, fs: &Path, files: &[(String, Vec<u8>)], when: &str) {
    let fsck = super::run_tool("e2fsck", &["-f", "-n", image.to_str().unwrap()], 120);
    assert!(
        fsck.status.success(),
        "e2fsck {when}: {}{}",
        String::from_utf8_lossy(&fsck.stdout),
        String::from_utf8_lossy(&fsck.stderr)
    );
    let ext = fuse2fs(image, fs);
    for (name, body) in files {
        assert!(
            std::fs::read(fs.join(name)).unwrap() == *body,
            "{name} differs {when}"
        );
    }
    unmount(fs, ext);
}

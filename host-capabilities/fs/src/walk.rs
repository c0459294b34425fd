//! Opening grant directories by handle. The operator's root is opened by
//! path (it is trusted); every component under it is opened from its parent
//! with `O_NOFOLLOW`, so no symlink in a grant path is ever followed, inside
//! the root or out of it, whoever created it.

use std::fs::File;
use std::io;
use std::path::Path;

use cap_primitives::ambient_authority;
use cap_primitives::fs::{DirOptions, FollowSymlinks, create_dir, open_dir_nofollow, stat};

/// Opens a developer's own directory (`warden run`), links followed.
pub fn open_ambient(path: &Path) -> io::Result<File> {
    cap_primitives::fs::open_ambient_dir(path, ambient_authority())
}

/// Opens `root/parts[0]/parts[1]/...`, each part a plain name. With
/// `create`, missing directories are made (inside their parent, by handle).
pub fn open_beneath(root: &Path, parts: &[String], create: bool) -> Result<File, String> {
    let mut dir = open_ambient(root).map_err(|e| {
        format!(
            "is not usable: the root {} cannot be opened: {e}",
            root.display()
        )
    })?;
    for (i, part) in parts.iter().enumerate() {
        let name = Path::new(part);
        let at = || parts[..=i].join("/");
        let opened = match open_dir_nofollow(&dir, name) {
            Err(e) if create && e.kind() == io::ErrorKind::NotFound => {
                match create_dir(&dir, name, &DirOptions::new()) {
                    Ok(()) => open_dir_nofollow(&dir, name),
                    // Made by someone else meanwhile: open what is there now.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        open_dir_nofollow(&dir, name)
                    }
                    Err(e) => return Err(format!("could not be created at {}: {e}", at())),
                }
            }
            other => other,
        };
        dir = opened.map_err(|e| why_not(&dir, name, &at(), e))?;
    }
    Ok(dir)
}

/// Names the reason a component could not be opened as a directory.
fn why_not(parent: &File, name: &Path, at: &str, err: io::Error) -> String {
    match stat(parent, name, FollowSymlinks::No) {
        Ok(m) if m.file_type().is_symlink() => {
            format!("crosses a symlink at {at}; grant paths never follow links")
        }
        Ok(m) if !m.is_dir() => format!("is not a directory at {at}"),
        _ => format!("is not usable at {at}: {err}"),
    }
}

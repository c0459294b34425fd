//! Reads every file under the read-only `/input` grant and writes a summary
//! into the read-write `/output` grant.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;

use warden_sdk::Task;

struct FsReport;

struct FileStats {
    name: String,
    bytes: u64,
    lines: usize,
}

impl Task for FsReport {
    fn run() -> Result<(), String> {
        let input = Path::new("/input");
        let mut files = Vec::new();
        collect(input, input, &mut files)?;
        files.sort_by(|a, b| a.name.cmp(&b.name));

        let mut report = String::new();
        for f in &files {
            writeln!(report, "{}\t{} bytes\t{} lines", f.name, f.bytes, f.lines).unwrap();
        }
        let total: u64 = files.iter().map(|f| f.bytes).sum();
        writeln!(report, "total\t{} files\t{total} bytes", files.len()).unwrap();

        fs::write("/output/report.txt", &report)
            .map_err(|e| format!("writing /output/report.txt: {e}"))?;
        print!("{report}");
        Ok(())
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<FileStats>) -> Result<(), String> {
    let entries = fs::read_dir(dir).map_err(|e| format!("listing {}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("listing {}: {e}", dir.display()))?;
        let path = entry.path();
        let kind = entry
            .file_type()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        if kind.is_dir() {
            collect(root, &path, out)?;
        } else if kind.is_file() {
            let data = fs::read(&path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            out.push(FileStats {
                name: path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string(),
                bytes: data.len() as u64,
                lines: data.iter().filter(|&&b| b == b'\n').count(),
            });
        }
    }
    Ok(())
}

warden_sdk::export_task!(FsReport);

//! `trove init`: writes a small working pipeline into an empty directory,
//! using only `sh`, `awk` and `sort`, so `trove run` works right after.

use std::process::ExitCode;

use anyhow::Context as _;

use crate::args::InitArgs;
use crate::commands::Ctx;

/// The example pipeline `trove init` writes.
pub const EXAMPLE: &str = r#"# A trove pipeline: ops wired by the paths they read and write.
# Run it with `trove run`, then run it again: everything is memoized.
# Edit `title` below and `trove plan` says that only `report` re-runs.

[job]
name = "hello"

[ops.generate]
cmd = '''awk -v n={config.rows} 'BEGIN { print "city,amount"; for (i = 0; i < n; i++) print substr("LyonOsloPune", 1 + 4 * (i % 3), 4) "," (i * 7) % 100 }' > {out.raw}'''
out = { raw = "data/raw.csv" }
config = { rows = 1000 }

[ops.total]
cmd = '''awk -F, 'NR > 1 { sum[$1] += $2 } END { for (c in sum) print c "," sum[c] }' {in.raw} | sort > {out.totals}'''
in = { raw = "data/raw.csv" }
out = { totals = "build/totals.csv" }

[ops.report]
cmd = '''awk -F, -v title={config.title} 'BEGIN { print title } { printf "%-6s %8d\n", $1, $2 }' {in.totals} > {out.report}'''
in = { totals = "build/totals.csv" }
out = { report = "build/report.txt" }
config = { title = "Totals by city" }
"#;

/// Runs `trove init`.
pub fn exec(_args: InitArgs, ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let dir = &ctx.dir;
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        if !entry.file_name().to_string_lossy().starts_with('.') {
            anyhow::bail!(
                "{} is not empty (it holds {}): `trove init` writes into an empty directory",
                dir.display(),
                entry.file_name().to_string_lossy()
            );
        }
    }
    let file = dir.join("trove.toml");
    std::fs::write(&file, EXAMPLE).with_context(|| format!("writing {}", file.display()))?;
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "/.trove/\n/build/\n/data/\n")
            .with_context(|| format!("writing {}", ignore.display()))?;
    }
    crate::render::human::note("wrote trove.toml: try `trove run`, then `trove run` again");
    Ok(ExitCode::SUCCESS)
}

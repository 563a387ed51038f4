//! Unit tests of the pipeline parser: each case is a `trove.toml` text and
//! the expected summary or rendered diagnostics.

use super::*;

/// Parses `input`; renders the pipeline (or the diagnostics) and compares.
fn check(input: &str, expect: &str) {
    let actual = match parse(input) {
        Ok(p) => summary(&p),
        Err(diags) => diags.iter().map(|d| d.render("trove.toml", input)).collect::<String>(),
    };
    assert_eq!(actual.trim_end(), expect.trim(), "\n--- actual ---\n{actual}");
}

fn summary(p: &Pipeline) -> String {
    let mut out =
        format!("job {} ({})\n", p.name, if p.early_cutoff { "early cutoff" } else { "lineage" });
    for r in &p.resources {
        out.push_str(&format!("resource {} {:?} config={}\n", r.name, r.version, r.config));
    }
    for op in &p.ops {
        out.push_str(&format!("op {}: {}\n", op.name, op.command));
        for i in &op.inputs {
            let from = match &i.from {
                Wire::Source => "source".to_owned(),
                Wire::Output { op, output } => format!("{op}.{output}"),
            };
            out.push_str(&format!("  in {} = {} ({from})\n", i.name, i.path));
        }
        for o in &op.outputs {
            out.push_str(&format!("  out {} = {}\n", o.name, o.path));
        }
    }
    out
}

#[test]
fn a_full_pipeline_wires_ops_by_path() {
    check(
        r#"
[job]
name = "sales"

[resources.python]
version = "3.11"
config = { threads = 2 }

[ops.clean]
cmd = "python3 clean.py {in.raw} {out.clean} --min {config.min} -t {resource.python.threads}"
in = { raw = "./data//raw.csv" }
out = { clean = "build/clean.csv" }
config = { min = 10 }
code = ["clean.py"]
resources = ["python"]

[ops.agg]
cmd = "sort {in.clean} > {out.agg}"
in = { clean = "build/clean.csv" }
out = { agg = "build/agg/by_city.csv" }

[ops.report]
cmd = "cat {in.part} > {out.report}"
in = { part = "build/agg/by_city.csv" }
out = { report = "report.txt" }
"#,
        r#"
job sales (early cutoff)
resource python Fixed("3.11") config={"threads":2}
op clean: python3 clean.py data/raw.csv build/clean.csv --min 10 -t 2
  in raw = data/raw.csv (source)
  out clean = build/clean.csv
op agg: sort build/clean.csv > build/agg/by_city.csv
  in clean = build/clean.csv (clean.clean)
  out agg = build/agg/by_city.csv
op report: cat build/agg/by_city.csv > report.txt
  in part = build/agg/by_city.csv (agg.agg)
  out report = report.txt
"#,
    );
}

#[test]
fn inputs_inside_an_output_directory_read_that_output() {
    check(
        r#"
[ops.split]
cmd = "mkdir -p {out.parts}"
out = { parts = "build/parts" }
[ops.first]
cmd = "cat {in.p} > {out.o}"
in = { p = "build/parts/0.csv" }
out = { o = "first.csv" }
"#,
        r#"
job job (early cutoff)
op split: mkdir -p build/parts
  out parts = build/parts
op first: cat build/parts/0.csv > first.csv
  in p = build/parts/0.csv (split.parts)
  out o = first.csv
"#,
    );
}

#[test]
fn values_are_shell_quoted_and_other_braces_left_alone() {
    check(
        r#"
[job]
early_cutoff = false
[ops.a]
cmd = '''awk '{ print $1 }' {in.x} | grep {config.pattern} > {out.y}; echo {config.nested.deep} {config.list}'''
in = { x = "my file.txt" }
out = { y = "out.txt" }
config = { pattern = "it's $HOME", nested = { deep = true }, list = [1, 2] }
"#,
        r#"
job job (lineage)
op a: awk '{ print $1 }' 'my file.txt' | grep 'it'\''s $HOME' > out.txt; echo true '[1,2]'
  in x = my file.txt (source)
  out y = out.txt
"#,
    );
}

#[test]
fn unknown_keys_suggest_the_closest() {
    check(
        r#"
[ops.clean]
cmdd = "true"
"#,
        r#"
error: unknown key `cmdd` in op `clean`
 --> trove.toml:3:1
  |
3 | cmdd = "true"
  | ^^^^ did you mean `cmd`?
error: op `clean` has no `cmd`
 --> trove.toml:2:6
  |
2 | [ops.clean]
  |      ^^^^^ add `cmd = "..."` to this op
"#,
    );
}

#[test]
fn unknown_template_names_point_into_the_command() {
    check(
        r#"
[ops.clean]
cmd = "clean {in.raww} > {out.clean}"
in = { raw = "raw.csv" }
out = { clean = "clean.csv" }
"#,
        r#"
error: unknown template name `{in.raww}` in op `clean`: no input `raww`
 --> trove.toml:3:14
  |
3 | cmd = "clean {in.raww} > {out.clean}"
  |              ^^^^^^^^^ did you mean `raw`?
"#,
    );
}

#[test]
fn unknown_config_keys_and_resources_in_templates() {
    check(
        r#"
[resources.py]
config = { threads = 2 }
[ops.a]
cmd = "x {config.min} {resource.py.threads}"
config = { max = 1 }
"#,
        r#"
error: unknown template name `{config.min}` in op `a`: no config key `min`
 --> trove.toml:5:10
  |
5 | cmd = "x {config.min} {resource.py.threads}"
  |          ^^^^^^^^^^^^ known: max
"#,
    );
}

#[test]
fn two_ops_writing_one_path_are_an_error() {
    check(
        r#"
[ops.a]
cmd = "true"
out = { o = "build/x.csv" }
[ops.b]
cmd = "true"
out = { o = "build/./x.csv" }
"#,
        r#"
error: duplicate output `build/x.csv`: written by op `a` and op `b`
 --> trove.toml:7:13
  |
7 | out = { o = "build/./x.csv" }
  |             ^^^^^^^^^^^^^^^ also declared as output `o` of op `a` on line 4
"#,
    );
}

#[test]
fn a_source_directory_holding_an_output_is_an_error() {
    // Hashed before anything runs, the directory would be read stale.
    check(
        r#"
[ops.a]
cmd = "true"
out = { o = "data/gen.txt" }
[ops.b]
cmd = "true"
in = { d = "data", ok = "data/gen.txt", other = "database" }
out = { o = "b.txt" }
"#,
        r#"
error: input `d` (data) of op `b` is a source directory that holds `data/gen.txt`, output `o` of op `a`
 --> trove.toml:7:12
  |
7 | in = { d = "data", ok = "data/gen.txt", other = "database" }
  |            ^^^^^^ a source may not hold an output: read `data/gen.txt` as an input of its own, or write it outside `data`
"#,
    );
}

#[test]
fn a_code_file_another_op_writes_is_an_error() {
    check(
        r#"
[ops.gen]
cmd = "true"
out = { s = "gen/script.sh", d = "tools" }
[ops.use]
cmd = "true"
code = ["gen/script.sh", "gen", "tools/x.sh", "generate.sh"]
"#,
        r#"
error: code file `gen/script.sh` of op `use` is output `s` of op `gen`
 --> trove.toml:7:9
  |
7 | code = ["gen/script.sh", "gen", "tools/x.sh", "generate.sh"]
  |         ^^^^^^^^^^^^^^^ code files must be sources: read a generated file through `in`, which wires the two ops
error: code directory `gen` of op `use` holds `gen/script.sh`, which is output `s` of op `gen`
 --> trove.toml:7:26
  |
7 | code = ["gen/script.sh", "gen", "tools/x.sh", "generate.sh"]
  |                          ^^^^^ code files must be sources: read a generated file through `in`, which wires the two ops
error: code file `tools/x.sh` of op `use` lies inside `tools`, which is output `d` of op `gen`
 --> trove.toml:7:33
  |
7 | code = ["gen/script.sh", "gen", "tools/x.sh", "generate.sh"]
  |                                 ^^^^^^^^^^^^ code files must be sources: read a generated file through `in`, which wires the two ops
"#,
    );
}

#[test]
fn an_op_may_not_write_the_pipeline_file() {
    let text = r#"
[ops.x]
cmd = "true"
out = { o = "trove.toml", p = "sub/trove.toml" }
"#;
    let pipeline = parse(text).unwrap();
    let rendered: String = check_pipeline_file(&pipeline, "trove.toml")
        .iter()
        .map(|d| d.render("trove.toml", text))
        .collect();
    assert_eq!(
        rendered.trim_end(),
        r#"
error: output `o` of op `x` is the pipeline file `trove.toml`
 --> trove.toml:4:13
  |
4 | out = { o = "trove.toml", p = "sub/trove.toml" }
  |             ^^^^^^^^^^^^ an op may not write the pipeline file: choose another path
"#
        .trim()
    );
}

#[test]
fn invalid_names_point_at_the_name() {
    check(
        r#"
[ops."a b/c"]
cmd = "true"
[ops.ok]
cmd = "true"
out = { "o/x" = "x.txt" }
"#,
        r#"
error: op name `a b/c` is invalid
 --> trove.toml:2:6
  |
2 | [ops."a b/c"]
  |      ^^^^^^^ names are non-empty and contain no `/`, newline or NUL
error: op `ok` output name `o/x` is invalid
 --> trove.toml:6:9
  |
6 | out = { "o/x" = "x.txt" }
  |         ^^^^^ names are non-empty and contain no `/`, newline or NUL
"#,
    );
}

#[test]
fn a_store_in_an_output_or_a_source_is_an_error() {
    let text = r#"
[ops.a]
cmd = "true"
out = { o = "build", p = "st/x" }
[ops.b]
cmd = "true"
in = { d = "data" }
code = ["st/tool.sh"]
"#;
    let pipeline = parse(text).unwrap();
    let render = |store: &str| -> String {
        check_placement(&pipeline, store).iter().map(|d| d.render("trove.toml", text)).collect()
    };
    assert!(render(".trove").is_empty(), "{}", render(".trove"));
    assert!(render("elsewhere/st").is_empty());
    let in_output = render("build/.trove");
    assert!(
        in_output.contains("output `o` of op `a` holds the store `build/.trove`"),
        "{in_output}"
    );
    let in_source = render("data/st");
    assert!(
        in_source.contains("input `d` (data) of op `b` holds the store `data/st`"),
        "{in_source}"
    );
    let holding = render("st");
    assert!(holding.contains("output `p` of op `a` lies inside the store `st`"), "{holding}");
    assert!(
        holding.contains("code path `st/tool.sh` of op `b` lies inside the store `st`"),
        "{holding}"
    );
}

#[test]
fn cycles_show_their_path() {
    check(
        r#"
[ops.a]
cmd = "true"
in = { x = "b.txt" }
out = { o = "a.txt" }
[ops.b]
cmd = "true"
in = { x = "a.txt" }
out = { o = "b.txt" }
"#,
        r#"
error: ops form a cycle: a -> b -> a
 --> trove.toml:4:12
  |
4 | in = { x = "b.txt" }
  |            ^^^^^^^
  = note: `a` reads b.txt (written by `b`)
  = note: `b` reads a.txt (written by `a`)
"#,
    );
}

#[test]
fn paths_must_stay_inside_the_workspace() {
    check(
        r#"
[ops.a]
cmd = "true"
in = { x = "../secret.txt", y = "/etc/passwd" }
code = ["a/../../b.py"]
"#,
        r#"
error: path `../secret.txt` is outside the workspace
 --> trove.toml:4:12
  |
4 | in = { x = "../secret.txt", y = "/etc/passwd" }
  |            ^^^^^^^^^^^^^^^
error: absolute path `/etc/passwd`: paths are relative to the workspace (the directory of trove.toml)
 --> trove.toml:4:33
  |
4 | in = { x = "../secret.txt", y = "/etc/passwd" }
  |                                 ^^^^^^^^^^^^^
error: path `a/../../b.py` is outside the workspace
 --> trove.toml:5:9
  |
5 | code = ["a/../../b.py"]
  |         ^^^^^^^^^^^^^^
"#,
    );
}

#[test]
fn unknown_resources_suggest_declared_ones() {
    check(
        r#"
[resources.python]
version = "3"
[resources.tools]
depends_on = ["pyhton"]
[ops.a]
cmd = "true"
resources = ["pythn"]
"#,
        r#"
error: op `a` requires unknown resource `pythn`
 --> trove.toml:8:14
  |
8 | resources = ["pythn"]
  |              ^^^^^^^ did you mean `python`?
error: resource `tools` depends on unknown resource `pyhton`
 --> trove.toml:5:15
  |
5 | depends_on = ["pyhton"]
  |               ^^^^^^^^ did you mean `python`?
"#,
    );
}

#[test]
fn invalid_toml_points_at_the_error() {
    let diags = parse("[ops.a]\ncmd = \"unterminated\n").unwrap_err();
    assert_eq!(diags.len(), 1);
    assert!(diags[0].message.starts_with("invalid TOML"), "{}", diags[0].message);
}

#[test]
fn wrong_types_are_named() {
    check(
        r#"
[job]
early_cutoff = "yes"
[ops.a]
cmd = ["true"]
"#,
        r#"
error: job.early_cutoff must be true or false, found string
 --> trove.toml:3:16
  |
3 | early_cutoff = "yes"
  |                ^^^^^
error: op `a` cmd must be a string, found array
 --> trove.toml:5:7
  |
5 | cmd = ["true"]
  |       ^^^^^^^^
"#,
    );
}

#[test]
fn shell_quote_leaves_plain_words_bare() {
    assert_eq!(shell_quote("build/a-b_c.csv"), "build/a-b_c.csv");
    assert_eq!(shell_quote("a b"), "'a b'");
    assert_eq!(shell_quote(""), "''");
    assert_eq!(shell_quote("x'y"), "'x'\\''y'");
    assert_eq!(shell_quote("$(rm -rf /)"), "'$(rm -rf /)'");
}

/// A pipeline using every feature, for the robustness tests below.
const FULL: &str = r#"[job]
name = "sales"
early_cutoff = false

[resources.python]
version = "3.11"
config = { threads = 2, nested = { deep = [1, "x"] } }

[resources.tool]
version = "1"
depends_on = ["python"]

[ops.clean]
cmd = "python3 clean.py {in.raw} {out.clean} --min {config.min} -t {resource.python.threads}"
in = { raw = "data/raw.csv" }
out = { clean = "build/clean.csv" }
config = { min = 10 }
code = ["clean.py"]
resources = ["python", "tool"]
env = ["LANG"]

[ops.agg]
cmd = "awk '{ print $1 }' {in.clean} > {out.agg}"
in = { clean = "build/clean.csv" }
out = { agg = "build/agg" }
version = "2"
"#;

/// Renders whatever `parse` returns, so every diagnostic's span is used.
fn render_outcome(text: &str) -> String {
    match parse(text) {
        Ok(p) => summary(&p),
        Err(diags) => diags.iter().map(|d| d.render("trove.toml", text)).collect(),
    }
}

#[test]
fn the_full_pipeline_parses() {
    assert!(parse(FULL).is_ok(), "{}", render_outcome(FULL));
}

/// ninja's build-log test, for pipeline files: every prefix of a valid file
/// parses or gives diagnostics that render; nothing panics.
#[test]
fn every_truncation_of_a_pipeline_parses_or_renders_a_diagnostic() {
    for (cut, _) in FULL.char_indices() {
        let text = &FULL[..cut];
        let rendered = render_outcome(text);
        if parse(text).is_err() {
            assert!(rendered.contains("error"), "prefix of {cut} bytes: {rendered}");
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// The `pipeline_parse` fuzz body: arbitrary text never panics the
    /// parser or the diagnostic renderer.
    #[test]
    fn arbitrary_text_never_panics_the_parser(text in "\\PC{0,300}") {
        let _ = render_outcome(&text);
    }

    /// Single-byte edits of a valid pipeline (the usual typos) never panic
    /// and, when rejected, say why.
    #[test]
    fn one_character_edits_parse_or_explain(pos in 0usize..FULL.len(), ch in proptest::char::any()) {
        let mut text: Vec<char> = FULL.chars().collect();
        let pos = pos.min(text.len() - 1);
        text[pos] = ch;
        let text: String = text.into_iter().collect();
        let rendered = render_outcome(&text);
        if parse(&text).is_err() {
            proptest::prop_assert!(rendered.contains("error"), "{}", rendered);
        }
    }
}

#[test]
fn a_path_with_a_line_break_is_refused() {
    let text = "[ops.a]\ncmd = \"true\"\nin = { s = \"src/a\\nb.txt\" }\nout = { o = \"o\" }\n";
    let diags = parse(text).err().unwrap_or_default();
    let rendered: String = diags.iter().map(|d| d.render("trove.toml", text)).collect();
    assert!(rendered.contains("holds a line break or NUL byte"), "{rendered}");
    assert!(rendered.contains("trove.toml:3:"), "{rendered}");
}

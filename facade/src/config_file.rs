//! `tessera server --config FILE`: a TOML file whose keys are the `server` flags (without the
//! `--`), turned into those flags ahead of the command line's, so the command line overrides
//! the file. Devices are an array of tables:
//!
//! ```toml
//! listen = "0.0.0.0:9000"
//! data = "/var/lib/tessera"
//! ec = "4+2"
//! repair-share = 10
//! no-access-log = false
//!
//! [[device]]
//! zone = "z1"
//! path = "/mnt/nvme0"
//! ```
//!
//! A `--device` on the command line replaces the file's whole device list (never merged with
//! it). An unknown key, a value of the wrong kind or a file that does not parse is refused
//! with the file and key named; nothing starts.

use std::ffi::OsString;
use std::path::Path;

/// `argv` with `--config FILE` (after the `server` subcommand) replaced by the file's flags.
/// `server` is the clap definition of the `server` subcommand (for the known flag names).
pub fn expand(argv: Vec<OsString>, server: &clap::Command) -> Result<Vec<OsString>, String> {
    let Some(at) = argv.iter().position(|a| a == "server") else { return Ok(argv) };
    let mut rest: Vec<OsString> = argv[at + 1..].to_vec();
    let mut file = None;
    let mut i = 0;
    while i < rest.len() {
        let a = rest[i].to_string_lossy().into_owned();
        if a == "--config" {
            let p = rest.get(i + 1).cloned().ok_or("--config needs a FILE")?;
            rest.drain(i..i + 2);
            file = Some(p);
        } else if let Some(p) = a.strip_prefix("--config=") {
            file = Some(OsString::from(p));
            rest.remove(i);
        } else {
            i += 1;
        }
    }
    let Some(file) = file else { return Ok(argv) };
    let given: Vec<String> = rest
        .iter()
        .filter_map(|a| a.to_str())
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect();
    let from_file = flags_of(Path::new(&file), server, &given)?;
    let mut out: Vec<OsString> = argv[..=at].to_vec();
    out.extend(from_file.into_iter().map(OsString::from));
    out.extend(rest);
    Ok(out)
}

/// The flags `path` asks for, leaving out those in `given` (the command line's).
fn flags_of(path: &Path, server: &clap::Command, given: &[String]) -> Result<Vec<String>, String> {
    let at = |what: String| format!("config file {}: {what}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| at(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| at(e.to_string()))?;
    let mut flags = Vec::new();
    for (key, value) in &table {
        if key == "device" {
            if given.iter().any(|g| g == "device") {
                continue;
            }
            let list = value.as_array().ok_or_else(|| at("`device` is an array of { zone, path } tables".into()))?;
            for d in list {
                let zone = d.get("zone").and_then(|v| v.as_str());
                let dpath = d.get("path").and_then(|v| v.as_str());
                match (zone, dpath, d.as_table().map(|t| t.len())) {
                    (Some(z), Some(p), Some(2)) => flags.extend(["--device".to_string(), format!("{z}={p}")]),
                    _ => return Err(at(format!("each [[device]] has exactly a zone and a path, not {d}"))),
                }
            }
            continue;
        }
        let arg = server
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config" && key != "help")
            .ok_or_else(|| at(format!("unknown key {key:?} (the keys are `tessera server` flags without the --)")))?;
        if given.iter().any(|g| g == key) {
            continue;
        }
        let takes_value = arg.get_action().takes_values();
        match value {
            toml::Value::Boolean(b) if !takes_value => {
                if *b {
                    flags.push(format!("--{key}"));
                }
            }
            toml::Value::String(s) if takes_value => flags.extend([format!("--{key}"), s.clone()]),
            toml::Value::Integer(n) if takes_value => flags.extend([format!("--{key}"), n.to_string()]),
            other => {
                let want = if takes_value { "a string or a number" } else { "true or false" };
                return Err(at(format!("{key} = {other}: give {want}")));
            }
        }
    }
    Ok(flags)
}

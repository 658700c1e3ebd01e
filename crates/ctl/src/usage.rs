//! etcdctl's usage screens, printed when a flag cannot be parsed: etcdctl's
//! own help template (rendered through Go's text/tabwriter rules) and, for
//! get/put/del lines inside `txn`, cobra's default usage. The flags are
//! taken from the clap definition so the two never drift apart.

use clap::{Arg, Command, CommandFactory};

use crate::cli::Cli;

/// etcdctl's `Use` strings and long descriptions, by command path.
fn use_and_long(path: &[&str]) -> (String, &'static str) {
    let (u, long): (&str, &str) = match path {
        [] => ("etcdctl", ""),
        ["put"] => (
            "put [options] <key> <value> (<value> can also be given from stdin)",
            PUT_LONG,
        ),
        ["get"] => ("get [options] <key> [range_end]", ""),
        ["del"] => ("del [options] <key> [range_end]", ""),
        ["txn"] => ("txn [options]", ""),
        ["compaction"] => ("compaction [options] <revision>", ""),
        ["watch"] => (
            "watch [options] [key or prefix] [range_end] [--] [exec-command arg1 arg2 ...]",
            "",
        ),
        ["lease"] | ["endpoint"] | ["member"] | ["alarm"] | ["snapshot"] | ["user"] | ["role"] => {
            ("", "")
        }
        ["auth"] => ("auth <enable or disable>", ""),
        ["user", "add"] => ("add <user name or user:password> [options]", ""),
        ["user", "delete"] => ("delete <user name>", ""),
        ["user", "get"] => ("get <user name> [options]", ""),
        ["user", "passwd"] => ("passwd <user name> [options]", ""),
        ["user", "grant-role"] => ("grant-role <user name> <role name>", ""),
        ["user", "revoke-role"] => ("revoke-role <user name> <role name>", ""),
        ["role", "add"] => ("add <role name>", ""),
        ["role", "delete"] => ("delete <role name>", ""),
        ["role", "get"] => ("get <role name>", ""),
        ["role", "grant-permission"] => (
            "grant-permission [options] <role name> <permission type> <key> [endkey]",
            "",
        ),
        ["role", "revoke-permission"] => ("revoke-permission <role name> <key> [endkey]", ""),
        ["lease", "grant"] => ("grant <ttl>", ""),
        ["lease", "revoke"] => ("revoke <leaseID>", ""),
        ["lease", "timetolive"] => ("timetolive <leaseID> [options]", ""),
        ["lease", "keep-alive"] => ("keep-alive [options] <leaseID>", ""),
        ["endpoint", "status"] => ("status", STATUS_LONG),
        ["member", "list"] => ("list", MEMBER_LIST_LONG),
        ["snapshot", "save"] => ("save <filename>", ""),
        ["snapshot", "restore"] => ("restore <filename> [options]", ""),
        ["snapshot", "status"] => ("status <filename>", SNAPSHOT_STATUS_LONG),
        ["member", "add"] => ("add <memberName> [options]", ""),
        ["member", "remove"] => ("remove <memberID>", ""),
        ["member", "update"] => ("update <memberID> [options]", ""),
        ["member", "promote"] => ("promote <memberID>", PROMOTE_LONG),
        ["move-leader"] => ("move-leader <transferee-member-id>", ""),
        ["make-mirror"] => ("make-mirror [options] <destination>", ""),
        ["elect"] => ("elect <election-name> [proposal]", ""),
        ["lock"] => ("lock <lockname> [exec-command arg1 arg2 ...]", ""),
        _ => ("", ""),
    };
    let name = path.last().copied().unwrap_or("etcdctl");
    let u = if u.is_empty() {
        if matches!(
            path,
            ["lease"] | ["endpoint"] | ["member"] | ["alarm"] | ["snapshot"]
        ) {
            format!("{name} <subcommand>")
        } else {
            name.to_string()
        }
    } else {
        u.to_string()
    };
    (u, long)
}

const PUT_LONG: &str = "
Puts the given key into the store.

When <value> begins with '-', <value> is interpreted as a flag.
Insert '--' for workaround:

$ put <key> -- <value>
$ put -- <key> <value>

If <value> isn't given as a command line argument and '--ignore-value' is not specified,
this command tries to read the value from standard input.

If <lease> isn't given as a command line argument and '--ignore-lease' is not specified,
this command tries to read the value from standard input.

For example,
$ cat file | put <key>
will store the content of the file to <key>.
";

const STATUS_LONG: &str = "When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are endpoint, ID, version, db size, is leader, is learner, raft term, raft index, raft applied index, errors.
";

const SNAPSHOT_STATUS_LONG: &str = "
When --write-out is set to simple, this command prints out comma-separated status lists for each endpoint.
The items in the lists are hash, revision, total keys, total size.
";

const PROMOTE_LONG: &str = "Promotes a non-voting learner member to a voting one in the cluster.\n";

const MEMBER_LIST_LONG: &str = "When --write-out is set to simple, this command prints out comma-separated member lists for each endpoint.
The items in the lists are ID, Status, Name, Peer Addrs, Client Addrs, Is Learner.
";

/// Flags oxctl accepts beyond etcdctl 3.4; its usage screens leave them out.
const NEWER_FLAGS: [&str; 2] = ["count-only", "progress-notify"];

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Bool,
    Str,
    Other,
}

struct Flag {
    name: String,
    short: Option<char>,
    usage: String,
    kind: Kind,
    /// pflag's DefValue text.
    default: String,
    /// pflag's type name in cobra's default usage ("int", "string", ...).
    type_name: &'static str,
}

fn flag_of(a: &Arg, cmd_name: &str) -> Option<Flag> {
    let name = a.get_long()?.to_string();
    if NEWER_FLAGS.contains(&name.as_str()) {
        return None;
    }
    if name == "help" {
        return Some(Flag {
            name,
            short: Some('h'),
            usage: format!("help for {cmd_name}"),
            kind: Kind::Bool,
            default: "false".into(),
            type_name: "",
        });
    }
    // pflag booleans are the only flags whose value is optional here.
    let is_bool = a
        .get_num_args()
        .is_some_and(|r| r.min_values() == 0 && r.max_values() == 1);
    let defaults: Vec<String> = a
        .get_default_values()
        .iter()
        .map(|v| v.to_string_lossy().into_owned())
        .collect();
    let id = a.get_id().as_str();
    let (kind, type_name, default) = if is_bool {
        (
            Kind::Bool,
            "",
            defaults.first().cloned().unwrap_or_else(|| "false".into()),
        )
    } else if id == "endpoints" {
        (Kind::Other, "strings", format!("[{}]", defaults.join(",")))
    } else if matches!(id, "limit" | "rev" | "ttl") {
        (
            Kind::Other,
            "int",
            defaults.first().cloned().unwrap_or_default(),
        )
    } else if id.ends_with("timeout") || id.ends_with("_time") {
        (
            Kind::Other,
            "duration",
            defaults.first().cloned().unwrap_or_default(),
        )
    } else {
        (
            Kind::Str,
            "string",
            defaults.first().cloned().unwrap_or_default(),
        )
    };
    let usage = a.get_help().map(|h| h.to_string()).unwrap_or_default();
    Some(Flag {
        name,
        short: a.get_short(),
        usage,
        kind,
        default,
        type_name,
    })
}

/// etcdctl's etcdFlagUsages line for one flag.
fn etcd_flag_line(f: &Flag) -> String {
    let mut s = match f.short {
        Some(c) => format!("  -{c}, --{}", f.name),
        None => format!("      --{}", f.name),
    };
    let val = if f.kind == Kind::Str {
        crate::gostr::quote(f.default.as_bytes())
    } else {
        f.default.clone()
    };
    if f.kind == Kind::Bool {
        s.push_str(&format!("[={val}]"));
    } else {
        s.push_str(&format!("={val}"));
    }
    s.push('\t');
    s.push_str(&f.usage);
    s.push('\n');
    s
}

/// Finds a subcommand by path in the built command tree.
fn find<'a>(root: &'a Command, path: &[&str]) -> Option<Vec<&'a Command>> {
    let mut chain = vec![root];
    let mut cur = root;
    for p in path {
        cur = cur.find_subcommand(p)?;
        chain.push(cur);
    }
    Some(chain)
}

/// Local and inherited flags of the command at the end of `chain`, each
/// sorted by name like pflag.
fn split_flags(chain: &[&Command]) -> (Vec<Flag>, Vec<Flag>) {
    let cmd = chain[chain.len() - 1];
    let name = cmd.get_name();
    let parent_globals: Vec<String> = chain[..chain.len() - 1]
        .iter()
        .flat_map(|c| {
            c.get_arguments()
                .filter(|a| a.is_global_set())
                .map(|a| a.get_id().to_string())
        })
        .collect();
    let (mut local, mut inherited) = (Vec::new(), Vec::new());
    for a in cmd.get_arguments() {
        let Some(f) = flag_of(a, name) else { continue };
        if a.get_id() != "help" && parent_globals.iter().any(|g| g == a.get_id().as_str()) {
            inherited.push(f);
        } else {
            local.push(f);
        }
    }
    local.sort_by(|a, b| a.name.cmp(&b.name));
    inherited.sort_by(|a, b| a.name.cmp(&b.name));
    (local, inherited)
}

fn built_root() -> Command {
    let mut root = Cli::command();
    root.build();
    root
}

/// Runnable commands below `cmd`, depth first in name order, with their
/// names relative to `cmd` (etcdctl's getSubCommands/cmdName).
fn sub_commands(cmd: &Command, prefix: &str, out: &mut Vec<(String, String)>) {
    let mut subs: Vec<&Command> = cmd
        .get_subcommands()
        .filter(|c| c.get_name() != "help")
        .collect();
    subs.sort_by_key(|c| c.get_name().to_string());
    for s in subs {
        let name = if prefix.is_empty() {
            s.get_name().to_string()
        } else {
            format!("{prefix} {}", s.get_name())
        };
        if s.has_subcommands() {
            sub_commands(s, &name, out);
        } else {
            out.push((
                name,
                s.get_about().map(|a| a.to_string()).unwrap_or_default(),
            ));
        }
    }
}

/// etcdctl's help/usage screen for the command at `path`.
pub fn etcdctl_usage(path: &[&str]) -> String {
    let root = built_root();
    let Some(chain) = find(&root, path) else {
        return String::new();
    };
    let cmd = chain[chain.len() - 1];
    let (use_str, long) = use_and_long(path);
    let short = if path.is_empty() {
        "A simple command line client for etcd3.".to_string()
    } else {
        cmd.get_about().map(|a| a.to_string()).unwrap_or_default()
    };
    let mut t = String::from("NAME:\n");
    if path.is_empty() {
        t.push_str(&format!("\tetcdctl - {short}\n"));
    } else {
        t.push_str(&format!("\t{} - {short}\n", path.join(" ")));
    }
    let parent_path = if path.is_empty() {
        String::new()
    } else {
        let mut p = vec!["etcdctl"];
        p.extend_from_slice(&path[..path.len() - 1]);
        p.join(" ") + " "
    };
    t.push_str(&format!("\nUSAGE:\n\t{parent_path}{use_str} [flags]\n"));
    if path.is_empty() {
        t.push_str(&format!("\nVERSION:\n\t{}\n", env!("CARGO_PKG_VERSION")));
    }
    if cmd.has_subcommands() {
        t.push_str(&format!(
            "\nAPI VERSION:\n\t{}\n",
            crate::cmd::version::API_VERSION
        ));
        t.push_str("\n\nCOMMANDS:\n");
        let mut subs = Vec::new();
        sub_commands(cmd, "", &mut subs);
        for (n, s) in subs {
            t.push_str(&format!("\t{n}\t{s}\n"));
        }
    }
    let long = long.trim_matches(['\n', '\t', ' ']);
    if !long.is_empty() {
        t.push_str("\nDESCRIPTION:\n");
        for line in long.split('\n') {
            t.push_str(&format!("\t{line}\n"));
        }
    }
    let (local, inherited) = split_flags(&chain);
    if !local.is_empty() {
        t.push_str("\nOPTIONS:\n");
        for f in &local {
            t.push_str(&etcd_flag_line(f));
        }
    }
    if !inherited.is_empty() {
        t.push_str("\nGLOBAL OPTIONS:\n");
        for f in &inherited {
            t.push_str(&etcd_flag_line(f));
        }
    }
    t.push('\n');
    tabwriter(&t)
}

/// cobra's default usage for a get/put/del line inside `txn` (the command
/// hangs off a nameless root there, hence the three leading spaces).
pub fn cobra_usage(name: &str) -> String {
    let root = built_root();
    let Some(chain) = find(&root, &[name]) else {
        return String::new();
    };
    let (use_str, _) = use_and_long(&[name]);
    let (local, _) = split_flags(&chain);
    let mut lines: Vec<(String, String)> = Vec::new();
    for f in &local {
        if matches!(f.name.as_str(), "print-value-only" | "keys-only") && name != "get" {
            continue;
        }
        let mut l = match f.short {
            Some(c) => format!("  -{c}, --{}", f.name),
            None => format!("      --{}", f.name),
        };
        if !f.type_name.is_empty() {
            l.push(' ');
            l.push_str(f.type_name);
        }
        let mut usage = f.usage.clone();
        let zero = matches!(f.default.as_str(), "" | "0" | "false" | "[]");
        if !zero {
            if f.kind == Kind::Str {
                usage.push_str(&format!(
                    " (default {})",
                    crate::gostr::quote(f.default.as_bytes())
                ));
            } else {
                usage.push_str(&format!(" (default {})", f.default));
            }
        }
        lines.push((l, usage));
    }
    let maxlen = lines.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let mut t = format!("Usage:\n   {use_str} [flags]\n\nFlags:\n");
    for (l, u) in lines {
        // pflag measures the name part including a separator byte.
        let pad = " ".repeat(maxlen + 1 - l.len());
        t.push_str(format!("{l} {pad} {u}").trim_end());
        t.push('\n');
    }
    t.push('\n');
    t
}

/// Go's text/tabwriter with minwidth 0, tabwidth 8, padding 1 and tab
/// padding (the writer etcdctl prints its help through).
pub fn tabwriter(text: &str) -> String {
    const TABWIDTH: usize = 8;
    const PADDING: usize = 1;
    let ends_with_newline = text.ends_with('\n');
    let body = if ends_with_newline {
        &text[..text.len() - 1]
    } else {
        text
    };
    let lines: Vec<Vec<&str>> = body.split('\n').map(|l| l.split('\t').collect()).collect();
    let width = |s: &str| s.chars().count();

    fn pad(out: &mut String, textw: usize, cellw: usize) {
        let cellw = cellw.div_ceil(TABWIDTH) * TABWIDTH;
        let n = cellw - textw;
        for _ in 0..n.div_ceil(TABWIDTH) {
            out.push('\t');
        }
    }

    fn write_lines(
        out: &mut String,
        lines: &[Vec<&str>],
        l0: usize,
        l1: usize,
        widths: &[usize],
        last: usize,
    ) {
        for (i, line) in lines.iter().enumerate().take(l1).skip(l0) {
            for (j, c) in line.iter().enumerate() {
                out.push_str(c);
                if j + 1 < line.len() && j < widths.len() {
                    pad(out, c.chars().count(), widths[j]);
                } else if j + 1 < line.len() {
                    // A cell past the known columns keeps its tab.
                    out.push('\t');
                }
            }
            if i + 1 != last {
                out.push('\n');
            }
        }
    }

    fn format(
        out: &mut String,
        lines: &[Vec<&str>],
        mut l0: usize,
        l1: usize,
        widths: &mut Vec<usize>,
        width: &dyn Fn(&str) -> usize,
    ) {
        let column = widths.len();
        let mut this = l0;
        while this < l1 {
            if column + 1 >= lines[this].len() {
                this += 1;
                continue;
            }
            write_lines(out, lines, l0, this, widths, lines.len());
            l0 = this;
            let mut w = 0;
            while this < l1 && column + 1 < lines[this].len() {
                w = w.max(width(lines[this][column]) + PADDING);
                this += 1;
            }
            widths.push(w);
            format(out, lines, l0, this, widths, width);
            widths.pop();
            l0 = this;
        }
        write_lines(out, lines, l0, l1, widths, lines.len());
    }

    let mut out = String::new();
    let mut widths = Vec::new();
    format(&mut out, &lines, 0, lines.len(), &mut widths, &width);
    if ends_with_newline {
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from `etcdctl lease grant --help` (etcd 3.4.23).
    #[test]
    fn lease_grant_usage_matches_etcdctl() {
        let u = etcdctl_usage(&["lease", "grant"]);
        let head = "NAME:\n\tlease grant - Creates leases\n\nUSAGE:\n\tetcdctl lease grant <ttl> [flags]\n\nOPTIONS:\n  -h, --help[=false]\thelp for grant\n\nGLOBAL OPTIONS:\n      --cacert=\"\"\t\t\t\tverify certificates of TLS-enabled secure servers using this CA bundle\n";
        assert!(u.starts_with(head), "{u}");
    }

    #[test]
    fn tabwriter_aligns_columns() {
        assert_eq!(
            tabwriter("a\tx\nlonger-name\ty\n"),
            "a\t\tx\nlonger-name\ty\n"
        );
    }
}

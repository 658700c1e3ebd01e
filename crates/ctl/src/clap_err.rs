//! Turns clap's parse errors into the texts cobra/pflag print for etcdctl,
//! e.g. `Error: unknown flag: --bogus`, exit status 1.

use clap::error::{ContextKind, ContextValue, ErrorKind};

use crate::error::{CtlError, EXIT_ERROR};

fn ctx(e: &clap::Error, k: ContextKind) -> Option<String> {
    match e.get(k)? {
        ContextValue::String(s) => Some(s.clone()),
        ContextValue::Strings(v) => v.first().cloned(),
        _ => None,
    }
}

/// The flag as pflag names it in errors: "--rev", or "-w, --write-out".
fn flag_name(arg: &str) -> String {
    let name = arg.split([' ', '=']).next().unwrap_or(arg).to_string();
    match name.as_str() {
        "--write-out" | "-w" => "-w, --write-out".into(),
        "--interactive" | "-i" => "-i, --interactive".into(),
        "--discovery-srv" | "-d" => "-d, --discovery-srv".into(),
        _ => name,
    }
}

/// pflag's message for a clap error.
pub fn describe(e: &clap::Error) -> CtlError {
    let msg = match e.kind() {
        ErrorKind::UnknownArgument => {
            let arg = ctx(e, ContextKind::InvalidArg).unwrap_or_default();
            let arg = arg.split('=').next().unwrap_or("").to_string();
            if arg.starts_with("--") || arg.len() < 2 {
                format!("unknown flag: {arg}")
            } else {
                let c = arg.chars().nth(1).unwrap_or('-');
                format!("unknown shorthand flag: '{c}' in {arg}")
            }
        }
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let arg = flag_name(&ctx(e, ContextKind::InvalidArg).unwrap_or_default());
            let value = ctx(e, ContextKind::InvalidValue).unwrap_or_default();
            match std::error::Error::source(e) {
                Some(src) => format!(
                    "invalid argument {} for {} flag: {src}",
                    crate::gostr::quote(value.as_bytes()),
                    crate::gostr::quote(arg.as_bytes())
                ),
                None => format!(
                    "flag needs an argument: {}",
                    arg.rsplit(", ").next().unwrap_or(&arg)
                ),
            }
        }
        _ => {
            let text = e.render().to_string();
            let first = text
                .lines()
                .next()
                .unwrap_or("")
                .trim_start_matches("error: ")
                .to_string();
            first
        }
    };
    CtlError::new(EXIT_ERROR, msg)
}

/// Handles a failed command line parse; returns the exit status.
pub fn report(e: clap::Error) -> i32 {
    match e.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        | ErrorKind::MissingSubcommand => {
            let _ = e.print();
            0
        }
        ErrorKind::InvalidSubcommand => {
            let cmd = ctx(&e, ContextKind::InvalidSubcommand).unwrap_or_default();
            let m = format!("unknown command \"{cmd}\" for \"etcdctl\"");
            eprint!("Error: {m}\nRun 'etcdctl --help' for usage.\nError: {m}\n");
            EXIT_ERROR
        }
        _ => {
            let ce = describe(&e);
            // cobra: error, usage on stdout, an empty line, then etcdctl's
            // own report of the same error.
            eprintln!("Error: {}", ce.msg);
            let path = command_path(&std::env::args().skip(1).collect::<Vec<_>>());
            let refs: Vec<&str> = path.iter().map(String::as_str).collect();
            crate::print::out(crate::usage::etcdctl_usage(&refs).as_bytes());
            eprint!("\nError: {}\n", ce.msg);
            ce.code
        }
    }
}

/// The subcommand path named on a command line (flags skipped).
pub fn command_path(args: &[String]) -> Vec<String> {
    use clap::CommandFactory;
    let root = crate::cli::Cli::command();
    let mut cur = &root;
    let mut path = Vec::new();
    for a in args {
        if a == "--" {
            break;
        }
        if a.starts_with('-') {
            continue;
        }
        match cur.find_subcommand(a) {
            Some(sub) => {
                path.push(a.clone());
                cur = sub;
            }
            None if path.is_empty() => continue,
            None => break,
        }
    }
    path
}

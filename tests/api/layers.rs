//! The crate's layers, and the check that keeps them one-way: no module of `src/` names a module
//! of a layer above its own. The README's architecture section shows the same table.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

/// Every top-level module of `src/`, by layer, lowest first. A module may name the modules of its
/// own layer and of the layers before it, never of a layer after it. `entity` and `migration`
/// are crates of their own, below `db`.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "primitives",
        &["primitives", "error", "config", "telemetry"],
    ),
    ("database", &["db"]),
    (
        "services",
        &[
            "state",
            "audit",
            "webhooks",
            "tenancy",
            "auth",
            "tenant_data",
            "batch",
        ],
    ),
    ("graphql", &["graphql"]),
    ("http", &["http"]),
    ("entry points", &["startup", "cli", "app"]),
];

/// Inside the services layer, lowest first: a service names only the services before it, and
/// `state`, the handle they all share (which holds parts of several of them).
const SERVICES: &[&[&str]] = &[
    // The audit trail queues the webhook event of each audited change (in its transaction);
    // webhooks audit their own changes.
    &["audit", "webhooks"],
    &["tenancy"],
    &["auth"],
    &["tenant_data", "batch"],
];
const SHARED_STATE: &str = "state";

#[test]
fn no_module_names_a_module_of_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    let mut unplaced = BTreeSet::new();
    for file in rust_files(&src) {
        let relative = file.strip_prefix(&src).unwrap();
        let module_path = module_path(relative);
        let Some(own) = module_path.first() else {
            continue; // lib.rs and main.rs declare modules; they are above every layer
        };
        if layer_of(own).is_none() {
            unplaced.insert(own.clone());
            continue;
        }
        let source = std::fs::read_to_string(&file).unwrap();
        for named in named_modules(&source, &module_path) {
            if let Some(why) = forbidden(own, &named) {
                violations.push(format!("src/{} names `{named}`: {why}", relative.display()));
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "place these modules in LAYERS (tests/api/layers.rs) and the README: {unplaced:?}"
    );
    assert!(
        violations.is_empty(),
        "layers are one-way (see LAYERS in tests/api/layers.rs):\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_layer_check_sees_every_way_of_naming_a_module() {
    let db_file = vec!["db".to_owned(), "pinned".to_owned()];
    let named = |source: &str| named_modules(source, &db_file);
    let set =
        |names: &[&str]| -> BTreeSet<String> { names.iter().map(|n| n.to_string()).collect() };
    assert_eq!(
        named("use crate::tenancy::naming::SchemaName;"),
        set(&["tenancy"])
    );
    assert_eq!(
        named("use crate::{\n    config::Config,\n    graphql::{a, b},\n};"),
        set(&["config", "graphql"])
    );
    assert_eq!(named("let x = crate::http::f();"), set(&["http"]));
    assert_eq!(named("use super::super::auth::Principal;"), set(&["auth"]));
    assert_eq!(
        named("use super::embedded::EmbeddedPostgres;"),
        BTreeSet::new()
    );
    assert_eq!(
        named("/// see crate::http\n// crate::graphql"),
        BTreeSet::new()
    );
    assert!(forbidden("db", "tenancy").is_some());
    assert!(forbidden("tenancy", "auth").is_some());
    assert_eq!(forbidden("tenancy", "state"), None);
    assert_eq!(forbidden("graphql", "db"), None);
}

/// Why `from` may not name `to`, if it may not.
fn forbidden(from: &str, to: &str) -> Option<String> {
    let (Some(from_layer), Some(to_layer)) = (layer_of(from), layer_of(to)) else {
        return None; // not a module of ours (a crate, or a name this check does not know)
    };
    if to_layer > from_layer {
        return Some(format!(
            "layer {} is above layer {}",
            LAYERS[to_layer].0, LAYERS[from_layer].0
        ));
    }
    if to_layer == from_layer
        && from != SHARED_STATE
        && to != SHARED_STATE
        && let (Some(from_rank), Some(to_rank)) = (service_rank(from), service_rank(to))
        && to_rank > from_rank
    {
        return Some(format!("service `{to}` is above service `{from}`"));
    }
    None
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

fn service_rank(module: &str) -> Option<usize> {
    SERVICES.iter().position(|rank| rank.contains(&module))
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// `db/pinned.rs` → `[db, pinned]`, `db/mod.rs` → `[db]`, `lib.rs` → `[]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut path: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if matches!(
        path.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        path.pop();
    }
    path
}

/// The top-level modules that `source` (the file of module `own_path`) names through `crate::`
/// paths or `super::` paths that climb out of its own top-level module. Comment lines are left
/// out; string literals are not (`#[graphql(remote = "crate::…")]` names a module too).
fn named_modules(source: &str, own_path: &[String]) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut named = BTreeSet::new();
    let bytes = code.as_bytes();
    let mut at = 0;
    while at < code.len() {
        let rest = &code[at..];
        let starts_path = at == 0 || !is_ident_byte(bytes[at - 1]) && bytes[at - 1] != b'$';
        let after_colons = at >= 2 && &bytes[at - 2..at] == b"::";
        if starts_path && !after_colons && rest.starts_with("crate::") {
            named.extend(first_segments(&rest["crate::".len()..]));
            at += "crate::".len();
        } else if starts_path && !after_colons && rest.starts_with("super::") {
            let mut climbs = 0;
            let mut tail = rest;
            while let Some(next) = tail.strip_prefix("super::") {
                climbs += 1;
                tail = next.trim_start();
            }
            if climbs >= own_path.len() {
                named.extend(first_segments(tail));
            }
            at += rest.len() - tail.len();
        } else {
            at += rest.chars().next().map_or(1, char::len_utf8);
        }
    }
    named
}

/// The first segment of the path at the start of `tail`, or of each path of a `{…}` group.
fn first_segments(tail: &str) -> Vec<String> {
    let tail = tail.trim_start();
    let Some(group) = tail.strip_prefix('{') else {
        return identifier(tail).into_iter().collect();
    };
    let mut segments = Vec::new();
    let mut depth = 0;
    let mut item_start = true;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => item_start = true,
            c if item_start && !c.is_whitespace() => {
                item_start = false;
                segments.extend(identifier(&group[i..]));
            }
            _ => {}
        }
    }
    segments
}

fn identifier(text: &str) -> Option<String> {
    let end = text
        .bytes()
        .position(|b| !is_ident_byte(b))
        .unwrap_or(text.len());
    (end > 0).then(|| text[..end].to_owned())
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

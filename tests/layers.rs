//! The floors of `src/` (docs/architecture.md): no import circle between the
//! files of the crate, the low modules never reach the commands, and every
//! file stays at most 600 lines.
//!
//! The import graph is read from the source text: every `crate::`, `super::`,
//! `self::` path (in `use` trees, grouped ones included, and inline in code),
//! every path through a name a `use` bound or a child module declared, is
//! mapped to the file of the deepest module it names, following re-exports
//! (`pub(crate) use child::Name` in a `mod.rs`) to the file that defines the
//! name. Declaring a child module (`mod journal;`) is no import: a file
//! depends on the items it uses, not on its module's other files. Rules:
//!
//! - The bundled mock (`src/mock/`, a cargo feature) is left out: its files
//!   are no nodes and paths into it are no edges. Test-only code
//!   (`#[cfg(test)]` items, `mod tests` blocks and files) is left out too, so a
//!   test may start the mock (as `pages.rs` and `sink/scim/write.rs` do).
//! - A circle fails unless all its files belong to one module directory
//!   (e.g. `http/mod.rs` and `http/auth.rs`, which uses the `Client` its parent
//!   defines): a room may lean on its own parts; no circle crosses a wall.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const MAX_LINES: usize = 600;

/// Modules that sit low (docs/architecture.md, floors 1 to 3).
const LOW: &[&str] = &[
    "term",
    "redact",
    "exit",
    "progress",
    "output",
    "config",
    "template",
    "request",
    "http",
    "pages",
    "paginate",
    "mapping",
    "jq_budget",
    "plan",
    "contested",
    "sink",
    "state",
    "signals",
];
/// What the low modules never import: the runs and the top.
const HIGH: &[&str] = &[
    "source", "saved", "report", "engine", "action", "describe", "listen", "cli", "commands", "lib",
];
/// Imports nothing of the crate.
const GROUND: &[&str] = &["term", "redact", "exit"];
/// Logging and output: on the ground floor only.
const ON_GROUND: &[&str] = &["progress", "output"];

// ---------------------------------------------------------------------------
// Reading the source

/// `text` with comments, string and char literals blanked (newlines kept), so
/// that braces and paths are only the code's.
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let at = |k: usize| c.get(k).copied().unwrap_or('\0');
        if c[i] == '/' && at(i + 1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && at(i + 1) == '*' {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && at(i + 1) == '/' {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    if c[i] == '\n' {
                        out.push('\n');
                    }
                    i += 1;
                }
            }
        } else if c[i] == 'r'
            && (at(i + 1) == '"' || at(i + 1) == '#')
            && (i == 0 || !ident(c[i - 1]) || (c[i - 1] == 'b' && (i < 2 || !ident(c[i - 2]))))
        {
            let mut j = i + 1;
            let mut hashes = 0;
            while at(j) == '#' {
                hashes += 1;
                j += 1;
            }
            if at(j) != '"' {
                out.push(c[i]);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= c.len() {
                    break;
                }
                if c[j] == '"' && (1..=hashes).all(|h| at(j + h) == '#') {
                    j += 1 + hashes;
                    break;
                }
                if c[j] == '\n' {
                    out.push('\n');
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    i += 1;
                }
                if at(i) == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c[i] == '\'' && at(i + 1) == '\\' {
            i += 3;
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c[i] == '\'' && at(i + 2) == '\'' {
            i += 3;
            out.push_str("' '");
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Blank every `#[cfg(test)]` item of stripped code; return the names of the
/// modules declared test-only (`#[cfg(test)] mod tests;`).
fn drop_tests(code: &mut String) -> Vec<String> {
    const ATTR: &str = "#[cfg(test)]";
    let mut test_mods = Vec::new();
    while let Some(start) = code.find(ATTR) {
        let b = code.as_bytes();
        let mut i = start + ATTR.len();
        let mut depth = 0usize;
        let mut end = b.len();
        while i < b.len() {
            match b[i] {
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = i + 1;
                        break;
                    }
                }
                b';' if depth == 0 => {
                    end = i + 1;
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        let item = &code[start + ATTR.len()..end];
        let words: Vec<&str> = item
            .split(|ch: char| !(ch.is_alphanumeric() || ch == '_'))
            .filter(|w| !w.is_empty())
            .collect();
        if item.trim_end().ends_with(';')
            && let Some(pos) = words.iter().position(|w| *w == "mod")
            && let Some(name) = words.get(pos + 1)
        {
            test_mods.push((*name).to_owned());
        }
        let blank: String = item
            .chars()
            .map(|ch| if ch == '\n' { '\n' } else { ' ' })
            .collect();
        code.replace_range(start..end, &format!("{}{blank}", " ".repeat(ATTR.len())));
    }
    test_mods
}

/// The tokens of stripped code: identifiers, `::`, and single characters.
fn tokens(code: &str) -> Vec<String> {
    let c: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_alphanumeric() || c[i] == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(c[start..i].iter().collect());
        } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
            out.push("::".to_owned());
            i += 2;
        } else if c[i].is_whitespace() {
            i += 1;
        } else {
            out.push(c[i].to_string());
            i += 1;
        }
    }
    out
}

/// One `use` tree from `t[*pos]`: every leaf as (bound name, path).
fn use_tree(
    t: &[String],
    pos: &mut usize,
    prefix: &[String],
    out: &mut Vec<(String, Vec<String>)>,
) {
    let mut path = prefix.to_vec();
    while *pos < t.len() {
        match t[*pos].as_str() {
            "{" => {
                *pos += 1;
                while *pos < t.len() && t[*pos] != "}" {
                    use_tree(t, pos, &path, out);
                    if *pos < t.len() && t[*pos] == "," {
                        *pos += 1;
                    }
                }
                *pos += 1;
                return;
            }
            "*" => {
                *pos += 1;
                out.push(("*".to_owned(), path));
                return;
            }
            "::" => *pos += 1,
            word if word.chars().all(|ch| ch.is_alphanumeric() || ch == '_') => {
                path.push(word.to_owned());
                *pos += 1;
                if t.get(*pos).map(String::as_str) == Some("::") {
                    continue;
                }
                if path.last().map(String::as_str) == Some("self") {
                    path.pop();
                }
                let mut name = path.last().cloned().unwrap_or_default();
                if t.get(*pos).map(String::as_str) == Some("as") {
                    name = t.get(*pos + 1).cloned().unwrap_or_default();
                    *pos += 2;
                }
                out.push((name, path));
                return;
            }
            _ => return,
        }
    }
}

/// A path written `levels` inline modules deep, as seen from the file's own
/// module (the inline modules themselves count as the file).
fn lift(path: &[String], levels: usize) -> Vec<String> {
    let supers = path.iter().take_while(|s| *s == "super").count();
    if levels == 0 || supers == 0 {
        return path.to_vec();
    }
    let kept = supers.saturating_sub(levels);
    let mut out = if kept == 0 {
        vec!["self".to_owned()]
    } else {
        vec!["super".to_owned(); kept]
    };
    out.extend_from_slice(&path[supers..]);
    out
}

/// A file of the crate, read.
struct File {
    path: String,
    module: Vec<String>,
    /// Its `use` leaves, (bound name, path as written).
    uses: Vec<(String, Vec<String>)>,
    /// Child modules it declares outside test code.
    children: BTreeSet<String>,
    /// Every path of two or more segments in its code, as written.
    paths: Vec<Vec<String>>,
}

fn read_file(root: &Path, file: &Path) -> (File, Vec<String>) {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let rel = file.strip_prefix(root).unwrap_or(file);
    let rel_text = rel.to_string_lossy().replace('\\', "/");
    let mut module: Vec<String> = rel_text
        .trim_start_matches("src/")
        .trim_end_matches(".rs")
        .split('/')
        .map(str::to_owned)
        .collect();
    if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
        module.pop();
    }
    let mut code = strip(&text);
    let test_mods = drop_tests(&mut code);
    let t = tokens(&code);
    let (mut uses, mut children, mut paths) = (Vec::new(), BTreeSet::new(), Vec::new());
    // Inline modules (`mod style { use super::X; }`): the braces they open at.
    let (mut depth, mut inline) = (0usize, Vec::<usize>::new());
    let mut i = 0;
    while i < t.len() {
        match t[i].as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last() == Some(&depth) {
                    inline.pop();
                }
            }
            _ => {}
        }
        if t[i] == "use" {
            i += 1;
            let before = uses.len();
            use_tree(&t, &mut i, &[], &mut uses);
            for (_, path) in &mut uses[before..] {
                *path = lift(path, inline.len());
            }
            continue;
        }
        if t[i] == "mod"
            && let Some(name) = t.get(i + 1)
            && matches!(t.get(i + 2).map(String::as_str), Some(";" | "{"))
        {
            children.insert(name.clone());
            if t[i + 2] == "{" {
                inline.push(depth);
                depth += 1;
                i += 3;
                continue;
            }
        }
        if t.get(i + 1).map(String::as_str) == Some("::") && (i == 0 || t[i - 1] != "::") {
            let mut path = vec![t[i].clone()];
            let mut j = i + 1;
            while t.get(j).map(String::as_str) == Some("::")
                && let Some(next) = t.get(j + 1)
                && next.chars().all(|ch| ch.is_alphanumeric() || ch == '_')
            {
                path.push(next.clone());
                j += 2;
            }
            paths.push(lift(&path, inline.len()));
            i = j;
            continue;
        }
        i += 1;
    }
    let file = File {
        path: rel_text,
        module,
        uses,
        children,
        paths,
    };
    (file, test_mods)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

// ---------------------------------------------------------------------------
// The graph

struct Crate {
    files: Vec<File>,
    by_module: BTreeMap<Vec<String>, usize>,
}

impl Crate {
    /// A path as written in `file`, made absolute (without `crate`); `None`
    /// for a path outside the crate (std, other crates, local names).
    fn absolute(&self, file: &File, path: &[String]) -> Option<Vec<String>> {
        let first = path.first()?.as_str();
        let mut base = file.module.clone();
        let rest = match first {
            "crate" => return Some(path[1..].to_vec()),
            "self" => &path[1..],
            "super" => {
                let supers = path.iter().take_while(|s| *s == "super").count();
                for _ in 0..supers {
                    base.pop()?;
                }
                &path[supers..]
            }
            name if file.children.contains(name) => path,
            name => {
                let (_, target) = file.uses.iter().find(|(bound, _)| bound == name)?;
                // `use other_crate::{self}` binds the name to itself.
                if target.first().map(String::as_str) == Some(name) {
                    return None;
                }
                let mut absolute = self.absolute(file, target)?;
                absolute.extend_from_slice(&path[1..]);
                return Some(absolute);
            }
        };
        base.extend_from_slice(rest);
        Some(base)
    }

    /// The file an absolute path lands in: the deepest module it names, or
    /// the file a re-export there points to.
    fn resolve(&self, absolute: &[String], depth: usize) -> Option<usize> {
        let k = (0..=absolute.len())
            .rev()
            .find(|k| self.by_module.contains_key(&absolute[..*k]))?;
        let index = self.by_module[&absolute[..k]];
        if k < absolute.len() && depth < 8 {
            let file = &self.files[index];
            let name = &absolute[k];
            if let Some((_, target)) = file.uses.iter().find(|(bound, _)| bound == name)
                && let Some(mut target) = self.absolute(file, target)
            {
                target.extend_from_slice(&absolute[k + 1..]);
                return self.resolve(&target, depth + 1).or(Some(index));
            }
        }
        Some(index)
    }

    fn graph(&self) -> Graph {
        let mut graph: Graph = self
            .files
            .iter()
            .map(|f| (f.path.clone(), BTreeSet::new()))
            .collect();
        for (from, file) in self.files.iter().enumerate() {
            let written = file
                .uses
                .iter()
                .map(|(_, p)| p.clone())
                .chain(file.paths.iter().cloned());
            for path in written {
                let Some(absolute) = self.absolute(file, &path) else {
                    continue;
                };
                if absolute.first().map(String::as_str) == Some("mock") {
                    continue;
                }
                if let Some(to) = self.resolve(&absolute, 0)
                    && to != from
                {
                    graph
                        .get_mut(&file.path)
                        .expect("every file is a node")
                        .insert(self.files[to].path.clone());
                }
            }
        }
        graph
    }
}

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The strongly connected components of more than one node (Tarjan).
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, node: &'g str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let low = self.low[node].min(self.low[next]);
                    self.low.insert(node, low);
                } else if self.on_stack.contains(next) {
                    let low = self.low[node].min(self.index[next]);
                    self.low.insert(node, low);
                }
            }
            if self.low[node] == self.index[node] {
                let mut component = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    component.push(top.to_owned());
                    if top == node {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found.sort();
    walk.found
}

/// The module directory a file belongs to (`src/http/auth.rs` → `src/http/`;
/// `src/source.rs` owns `src/source/`).
fn room(path: &str) -> String {
    let inner = path.trim_start_matches("src/").trim_end_matches(".rs");
    format!("src/{}/", inner.split('/').next().unwrap_or(inner))
}

/// A circle inside one module directory is allowed; any other is not.
fn crosses_a_wall(circle: &[String]) -> bool {
    circle.iter().any(|f| room(f) != room(&circle[0]))
}

/// A path that leads from `from` to `to` in `graph`, both included.
fn path_between(graph: &Graph, from: &str, to: &str, within: &[String]) -> Vec<String> {
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([from]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(node).into_iter().flatten() {
            if within.contains(next) && !prev.contains_key(next.as_str()) && next != from {
                prev.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    let mut path = vec![to.to_owned()];
    let mut at = to;
    while at != from {
        let Some(p) = prev.get(at) else { break };
        path.push((*p).to_owned());
        at = p;
    }
    path.reverse();
    path
}

fn load() -> (Crate, usize) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    rust_files(&root.join("src"), &mut paths);
    let mut files = Vec::new();
    let mut test_only = BTreeSet::new();
    for path in &paths {
        let (file, test_mods) = read_file(root, path);
        for m in test_mods {
            let mut module = file.module.clone();
            module.push(m);
            test_only.insert(module);
        }
        files.push(file);
    }
    let total = files.len();
    files.retain(|f| {
        f.path != "src/main.rs"
            && f.module.first().map(String::as_str) != Some("mock")
            && !test_only.contains(&f.module)
    });
    let by_module = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.module.clone(), i))
        .collect();
    (Crate { files, by_module }, total)
}

// ---------------------------------------------------------------------------
// The checks

#[test]
fn no_import_circle_crosses_a_module_wall() {
    let (krate, total) = load();
    let graph = krate.graph();
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    println!(
        "layers: {} files of {total} in src/ checked (mock and test-only files left out), {edges} import edges",
        graph.len()
    );
    // The reader must see the crate's real imports, or the check is empty.
    assert!(graph.len() > 40, "too few files read: {}", graph.len());
    assert!(edges > 100, "too few imports found: {edges}");
    assert!(graph["src/engine/mod.rs"].contains("src/plan.rs"));
    assert!(graph["src/config/sync.rs"].contains("src/config/ctx.rs"));

    let all = circles(&graph);
    let (inside, crossing): (Vec<_>, Vec<_>) = all.into_iter().partition(|c| !crosses_a_wall(c));
    for circle in &inside {
        println!(
            "layers: circle inside {} (allowed): {}",
            room(&circle[0]),
            circle.join(" ")
        );
    }
    let mut report = String::new();
    for circle in &crossing {
        // The example starts with an import across a wall and comes back.
        let (first, back) = circle
            .iter()
            .find_map(|from| {
                graph[from]
                    .iter()
                    .find(|to| circle.contains(to) && room(to) != room(from))
                    .map(|to| (from, to))
            })
            .expect("a circle across walls has an import across one");
        let mut path = path_between(&graph, back, first, circle);
        path.insert(0, first.clone());
        // The imports across walls inside the circle: one of them must go.
        let across: Vec<String> = circle
            .iter()
            .flat_map(|from| {
                graph[from]
                    .iter()
                    .filter(|to| circle.contains(to) && room(to) != room(from))
                    .map(move |to| format!("{from} -> {to}"))
            })
            .collect();
        report.push_str(&format!(
            "\n  circle of {} files: {}\n    e.g. {}\n    imports across walls in it:\n      {}",
            circle.len(),
            circle.join(" "),
            path.join(" -> "),
            across.join("\n      ")
        ));
    }
    println!("layers: {} circles across module walls", crossing.len());
    assert!(
        crossing.is_empty(),
        "import circles between modules:{report}"
    );
}

#[test]
fn low_modules_never_import_the_commands_floors() {
    let (krate, _) = load();
    let graph = krate.graph();
    let top = |f: &str| {
        room(f)
            .trim_start_matches("src/")
            .trim_end_matches('/')
            .to_owned()
    };
    let mut wrong = Vec::new();
    for (from, tos) in &graph {
        let from_room = top(from);
        for to in tos {
            let to_room = top(to);
            if from_room == to_room {
                continue;
            }
            if LOW.contains(&from_room.as_str()) && HIGH.contains(&to_room.as_str()) {
                wrong.push(format!("{from} -> {to}"));
            }
            if GROUND.contains(&from_room.as_str()) {
                wrong.push(format!("{from} -> {to} (the ground floor imports nothing)"));
            }
            if ON_GROUND.contains(&from_room.as_str()) && !GROUND.contains(&to_room.as_str()) {
                wrong.push(format!(
                    "{from} -> {to} (logging sits on the ground floor only)"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the floors:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn every_source_file_is_at_most_600_lines() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut paths = Vec::new();
    rust_files(&root.join("src"), &mut paths);
    let long: Vec<String> = paths
        .iter()
        .filter_map(|p| {
            let lines = std::fs::read_to_string(p).ok()?.lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", p.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines: {}",
        long.join(", ")
    );
}

// ---------------------------------------------------------------------------
// The checker checked

fn graph_of(edges: &[(&str, &str)]) -> Graph {
    let mut graph = Graph::new();
    for (a, b) in edges {
        graph
            .entry((*a).to_owned())
            .or_default()
            .insert((*b).to_owned());
        graph.entry((*b).to_owned()).or_default();
    }
    graph
}

#[test]
fn the_circle_finder_finds_circles_and_only_circles() {
    let graph = graph_of(&[
        ("src/a.rs", "src/b.rs"),
        ("src/b.rs", "src/c.rs"),
        ("src/c.rs", "src/a.rs"),
        ("src/c.rs", "src/d.rs"),
        ("src/d.rs", "src/e.rs"),
        ("src/x/mod.rs", "src/x/y.rs"),
        ("src/x/y.rs", "src/x/mod.rs"),
    ]);
    let found = circles(&graph);
    assert_eq!(
        found,
        [
            vec!["src/a.rs", "src/b.rs", "src/c.rs"],
            vec!["src/x/mod.rs", "src/x/y.rs"],
        ]
    );
    assert!(crosses_a_wall(&found[0]));
    assert!(!crosses_a_wall(&found[1]));
    assert_eq!(
        path_between(&graph, "src/b.rs", "src/a.rs", &found[0]),
        ["src/b.rs", "src/c.rs", "src/a.rs"]
    );
    assert!(
        circles(&graph_of(&[
            ("src/a.rs", "src/b.rs"),
            ("src/b.rs", "src/c.rs")
        ]))
        .is_empty()
    );
}

#[test]
fn the_reader_sees_grouped_inline_and_reexported_paths_and_skips_tests() {
    let mut code = strip(
        r##"
//! use crate::nothing;
use crate::{alpha, beta::{self, Gamma as G}};
use super::sibling::Item;
mod child;
pub(crate) use child::Thing;
fn f() { let s = "crate::in_a_string {"; let c = '{'; crate::delta::run(r#"}"#); }
#[cfg(test)]
mod tests { use crate::epsilon; fn g() { crate::zeta::h(); } }
#[cfg(test)]
mod more;
"##,
    );
    let test_mods = drop_tests(&mut code);
    assert_eq!(test_mods, ["more"]);
    let t = tokens(&code);
    assert!(!t.contains(&"epsilon".to_owned()) && !t.contains(&"zeta".to_owned()));
    assert!(!t.contains(&"in_a_string".to_owned()) && !t.contains(&"nothing".to_owned()));
    let mut uses = Vec::new();
    let mut i = 0;
    while i < t.len() {
        if t[i] == "use" {
            i += 1;
            use_tree(&t, &mut i, &[], &mut uses);
        } else {
            i += 1;
        }
    }
    let s = |p: &[&str]| p.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        uses,
        [
            ("alpha".to_owned(), s(&["crate", "alpha"])),
            ("beta".to_owned(), s(&["crate", "beta"])),
            ("G".to_owned(), s(&["crate", "beta", "Gamma"])),
            ("Item".to_owned(), s(&["super", "sibling", "Item"])),
            ("Thing".to_owned(), s(&["child", "Thing"])),
        ]
    );
    assert!(code.contains("crate::delta::run"));
}

#[test]
fn the_resolver_follows_reexports_to_the_defining_file() {
    let file = |path: &str, module: &[&str], uses: &[(&str, &[&str])], children: &[&str]| File {
        path: path.to_owned(),
        module: module.iter().map(|m| (*m).to_owned()).collect(),
        uses: uses
            .iter()
            .map(|(n, p)| ((*n).to_owned(), p.iter().map(|x| (*x).to_owned()).collect()))
            .collect(),
        children: children.iter().map(|c| (*c).to_owned()).collect(),
        paths: Vec::new(),
    };
    let files = vec![
        file("src/lib.rs", &[], &[], &["config", "exit"]),
        file(
            "src/config/mod.rs",
            &["config"],
            &[("ConfigError", &["ctx", "ConfigError"])],
            &["ctx"],
        ),
        file("src/config/ctx.rs", &["config", "ctx"], &[], &[]),
        file(
            "src/exit.rs",
            &["exit"],
            &[("ConfigError", &["crate", "config", "ConfigError"])],
            &[],
        ),
    ];
    let by_module = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.module.clone(), i))
        .collect();
    let krate = Crate { files, by_module };
    let graph = krate.graph();
    assert!(
        graph["src/exit.rs"].contains("src/config/ctx.rs"),
        "{graph:?}"
    );
    assert!(
        !graph["src/exit.rs"].contains("src/config/mod.rs"),
        "{graph:?}"
    );
    assert!(graph["src/config/mod.rs"].contains("src/config/ctx.rs"));
}

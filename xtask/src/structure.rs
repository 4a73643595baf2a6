//! The structure check of `supervisor/src` (a host unit test, so `cargo
//! xtask test` runs it): the groups of `docs/architecture.md` depend on each
//! other only downward, files stay under [`FILE_LINES_MAX`] lines and
//! functions under [`FN_LINES_MAX`]. It reads the sources only; it must not
//! build or run anything.
//!
//! The sources are parsed with `syn` (with `proc-macro2`'s span locations
//! for line numbers) rather than by hand: a path inside a string, a comment
//! or a raw string would fool a line scanner, and a function's end is only
//! known from its parsed block. Every `crate::`, `super::` and `self::` path
//! (in `use` trees, in code, and in macro arguments) is resolved to the
//! group (the first module below the crate root) it names.
//!
//! A fourth check: every non-test file's first module doc lines say what the
//! module must not do ([`says_must_not`]).
//!
//! Test code (`tests.rs`, `tests/` folders, `roottests.rs`, and items under
//! `#[cfg(test)]` or `#[test]`) is left out of all the checks. Known
//! exceptions are listed below, each named with its current size; the list
//! only shrinks: a stale entry fails the check too.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::spanned::Spanned;
use syn::visit::Visit;

/// The groups, lowest first: a group may use only groups before it.
pub const ORDER: [&str; 8] = ["common", "sys", "release", "confine", "supervise", "host", "boot", "cli"];
/// No non-test source file is longer than this.
pub const FILE_LINES_MAX: usize = 600;
/// No non-test function is longer than this.
pub const FN_LINES_MAX: usize = 80;

/// Upward edges not yet broken: (file under `supervisor/src`, the path it
/// names, resolved, up to the item).
const EDGE_EXCEPTIONS: &[(&str, &str)] = &[];

/// Files over [`FILE_LINES_MAX`] not yet split, with their current length
/// (which must not grow).
const FILE_EXCEPTIONS: &[(&str, usize)] = &[];

/// Functions over [`FN_LINES_MAX`] not yet split (`file::name`), with their
/// current length (which must not grow).
const FN_EXCEPTIONS: &[(&str, usize)] = &[];

/// One reference from a file to another group.
#[derive(Debug, Clone)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub file: String,
    pub line: usize,
    /// The resolved path, `crate::group::module::item`.
    pub path: String,
}

/// What one pass over the sources found.
#[derive(Debug, Default)]
pub struct Found {
    pub edges: Vec<Edge>,
    /// (file, lines) of every non-test file.
    pub files: Vec<(String, usize)>,
    /// (`file::name`, lines) of every non-test function.
    pub fns: Vec<(String, usize)>,
    /// Non-test files whose module docs do not say what they must not do.
    pub undocumented: Vec<String>,
}

/// How many of a module's first doc lines must hold its "must not".
pub const DOC_LINES: usize = 14;

/// Whether `text` opens with `//!` module docs whose first [`DOC_LINES`]
/// lines (joined, so a phrase may wrap) say what the module must not do.
pub fn says_must_not(text: &str) -> bool {
    let doc: Vec<&str> = text.lines().take_while(|l| l.starts_with("//!")).take(DOC_LINES).map(|l| l.trim_start_matches("//!").trim()).collect();
    doc.join(" ").to_lowercase().contains("must not")
}

/// Is `rel` (a path under `src`) a test-only file?
fn is_test_file(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name == "tests.rs" || name == "roottests.rs" || rel.split('/').any(|c| c == "tests")
}

/// The module path of a file under `src`: `confine/container/mod.rs` is
/// `["confine", "container"]`; `lib.rs` is `[]`.
fn module_of(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel.split('/').map(str::to_string).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_string());
    }
    parts
}

fn is_test_attr(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        let cfg_test = match &a.meta {
            syn::Meta::List(l) if l.path.is_ident("cfg") => {
                let t = l.tokens.to_string();
                t.contains("test") && !t.contains("not") && !t.contains("feature")
            }
            _ => false,
        };
        a.path().is_ident("test") || cfg_test
    })
}

/// Walks one file: its references, and its functions' lengths.
struct Walker<'a> {
    file: &'a str,
    group: String,
    /// The module path at the current point (the file's, then inline `mod`s).
    module: Vec<String>,
    found: &'a mut Found,
}

impl Walker<'_> {
    /// Records a path given as its segments, if it leaves the group.
    fn path(&mut self, segs: &[String], line: usize) {
        let Some(first) = segs.first() else { return };
        let mut abs: Vec<String> = match first.as_str() {
            "crate" => Vec::new(),
            "self" => self.module.clone(),
            "super" => self.module.clone(),
            _ => return,
        };
        let mut rest = &segs[1..];
        if first == "super" {
            abs.pop();
            while rest.first().map(String::as_str) == Some("super") {
                abs.pop();
                rest = &rest[1..];
            }
        }
        abs.extend(rest.iter().filter(|s| s.as_str() != "self").cloned());
        let Some(to) = abs.first() else { return };
        if !ORDER.contains(&to.as_str()) || *to == self.group {
            return;
        }
        let mut shown = vec!["crate".to_string()];
        shown.extend(abs.iter().cloned());
        self.found.edges.push(Edge { from: self.group.clone(), to: to.clone(), file: self.file.to_string(), line, path: shown.join("::") });
    }

    fn function(&mut self, name: &str, attrs: &[syn::Attribute], start: usize, end: usize) -> bool {
        if is_test_attr(attrs) {
            return false;
        }
        self.found.fns.push((format!("{}::{name}", self.file), end + 1 - start));
        true
    }

    /// Paths inside macro arguments, which `syn` leaves as tokens.
    fn tokens(&mut self, ts: TokenStream) {
        let toks: Vec<TokenTree> = ts.into_iter().collect();
        let mut i = 0;
        while i < toks.len() {
            if let TokenTree::Group(g) = &toks[i] {
                self.tokens(g.stream());
            }
            if let TokenTree::Ident(id) = &toks[i] {
                let s = id.to_string();
                if s == "crate" || s == "super" {
                    let line = id.span().start().line;
                    let mut segs = vec![s];
                    let mut j = i + 1;
                    while let (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)), Some(TokenTree::Ident(n))) =
                        (toks.get(j), toks.get(j + 1), toks.get(j + 2))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        segs.push(n.to_string());
                        j += 3;
                    }
                    self.path(&segs, line);
                    i = j;
                    continue;
                }
            }
            i += 1;
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                prefix.push(n.ident.to_string());
                self.path(prefix, n.ident.span().start().line);
                prefix.pop();
            }
            syn::UseTree::Rename(r) => {
                prefix.push(r.ident.to_string());
                self.path(prefix, r.ident.span().start().line);
                prefix.pop();
            }
            syn::UseTree::Glob(g) => self.path(prefix, g.star_token.span().start().line),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Walker<'_> {
    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if is_test_attr(&m.attrs) {
            return;
        }
        self.module.push(m.ident.to_string());
        syn::visit::visit_item_mod(self, m);
        self.module.pop();
    }

    fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
        let (start, end) = (f.sig.fn_token.span.start().line, f.block.brace_token.span.close().end().line);
        if self.function(&f.sig.ident.to_string(), &f.attrs, start, end) {
            syn::visit::visit_item_fn(self, f);
        }
    }

    fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
        let (start, end) = (f.sig.fn_token.span.start().line, f.block.brace_token.span.close().end().line);
        if self.function(&f.sig.ident.to_string(), &f.attrs, start, end) {
            syn::visit::visit_impl_item_fn(self, f);
        }
    }

    fn visit_item_impl(&mut self, i: &'ast syn::ItemImpl) {
        if !is_test_attr(&i.attrs) {
            syn::visit::visit_item_impl(self, i);
        }
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        if !is_test_attr(&u.attrs) {
            self.use_tree(&mut Vec::new(), &u.tree);
        }
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
        self.path(&segs, p.span().start().line);
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        self.tokens(m.tokens.clone());
        syn::visit::visit_macro(self, m);
    }
}

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Reads every source file under `src` (the library's; `main.rs` is the
/// binary over all groups and is not in any).
pub fn scan(src: &Path) -> Result<Found, String> {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    let mut found = Found::default();
    for path in files {
        let rel = path.strip_prefix(src).map_err(|e| e.to_string())?.to_string_lossy().replace('\\', "/");
        if rel == "main.rs" || rel == "lib.rs" || is_test_file(&rel) {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{rel}: {e}"))?;
        found.files.push((rel.clone(), text.lines().count()));
        if !says_must_not(&text) {
            found.undocumented.push(rel.clone());
        }
        let ast = syn::parse_file(&text).map_err(|e| format!("{rel}: {e}"))?;
        let module = module_of(&rel);
        let group = module.first().cloned().unwrap_or_default();
        let mut w = Walker { file: &rel, group, module, found: &mut found };
        w.visit_file(&ast);
    }
    Ok(found)
}

/// The groups in an order where each uses only those before it (Kahn's
/// algorithm over `edges`), or an edge of a cycle.
pub fn group_order(edges: &[&Edge]) -> Result<Vec<String>, String> {
    let mut uses: BTreeMap<&str, BTreeSet<&str>> = ORDER.iter().map(|g| (*g, BTreeSet::new())).collect();
    for e in edges {
        uses.entry(e.from.as_str()).or_default().insert(e.to.as_str());
    }
    let mut order: Vec<String> = Vec::new();
    while order.len() < uses.len() {
        let next = uses.iter().find(|(g, deps)| !order.iter().any(|o| o == *g) && deps.iter().all(|d| order.iter().any(|o| o == d)));
        match next {
            Some((g, _)) => order.push(g.to_string()),
            None => return Err(cycle(&uses, &order, edges)),
        }
    }
    Ok(order)
}

/// Names one cycle among the groups not yet ordered: from any of them,
/// follow an unordered dependency until a group repeats.
fn cycle(uses: &BTreeMap<&str, BTreeSet<&str>>, order: &[String], edges: &[&Edge]) -> String {
    let open = |g: &str| !order.iter().any(|o| o == g);
    let mut walk: Vec<&str> = uses.keys().copied().filter(|g| open(g)).take(1).collect();
    while let Some(&g) = walk.last() {
        let Some(&next) = uses.get(g).and_then(|d| d.iter().find(|d| open(d))) else { break };
        if let Some(i) = walk.iter().position(|w| *w == next) {
            walk.push(next);
            let ring = &walk[i..];
            let named: Vec<String> = ring
                .windows(2)
                .filter_map(|p| edges.iter().find(|e| e.from == p[0] && e.to == p[1]))
                .map(|e| format!("{} -> {} ({}:{} uses {})", e.from, e.to, e.file, e.line, e.path))
                .collect();
            return format!("group cycle {}: {}; order found before it: {order:?}", ring.join(" -> "), named.join("; "));
        }
        walk.push(next);
    }
    format!("group cycle among {walk:?}; order found before it: {order:?}")
}

fn rank(g: &str) -> usize {
    ORDER.iter().position(|o| *o == g).unwrap_or(usize::MAX)
}

/// Does `e` match a listed exception (file, and path up to that point)?
fn excepted(e: &Edge, (file, path): (&str, &str)) -> bool {
    e.file == file && (e.path == path || e.path.starts_with(&format!("{path}::")))
}

/// Every violation of the structure rules, as lines to print; empty when the
/// rules hold.
pub fn check(found: &Found) -> (Vec<String>, Vec<String>) {
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let mut used = vec![false; EDGE_EXCEPTIONS.len()];
    let mut kept: Vec<&Edge> = Vec::new();
    for e in &found.edges {
        if rank(&e.to) < rank(&e.from) {
            kept.push(e);
            continue;
        }
        match EDGE_EXCEPTIONS.iter().position(|x| excepted(e, *x)) {
            Some(i) => used[i] = true,
            None => {
                errors.push(format!("upward edge {} -> {}: {}:{} uses {}", e.from, e.to, e.file, e.line, e.path));
                kept.push(e);
            }
        }
    }
    for (i, x) in EDGE_EXCEPTIONS.iter().enumerate() {
        if !used[i] {
            errors.push(format!("stale edge exception {x:?}: remove it"));
        }
    }
    match group_order(&kept) {
        Ok(order) => notes.push(format!("group order found: {}", order.join(" <- "))),
        Err(e) => errors.push(e),
    }
    for f in &found.undocumented {
        errors.push(format!("{f}: its first {DOC_LINES} module doc lines do not say what it must not do"));
    }
    sizes(&found.files, FILE_EXCEPTIONS, FILE_LINES_MAX, "file", &mut errors);
    sizes(&found.fns, FN_EXCEPTIONS, FN_LINES_MAX, "function", &mut errors);
    notes.push(format!(
        "known exceptions: {} upward edges, {} files over {FILE_LINES_MAX} lines, {} functions over {FN_LINES_MAX} lines",
        EDGE_EXCEPTIONS.len(),
        FILE_EXCEPTIONS.len(),
        FN_EXCEPTIONS.len()
    ));
    (errors, notes)
}

fn sizes(all: &[(String, usize)], known: &[(&str, usize)], max: usize, what: &str, errors: &mut Vec<String>) {
    for (name, n) in all {
        let listed = known.iter().find(|(k, _)| k == name);
        match listed {
            _ if *n <= max => {}
            Some((_, was)) if n <= was => {}
            Some((_, was)) => errors.push(format!("{what} {name} grew to {n} lines (listed at {was}, limit {max})")),
            None => errors.push(format!("{what} {name} has {n} lines (limit {max})")),
        }
    }
    for (k, _) in known {
        if !all.iter().any(|(name, n)| name == k && *n > max) {
            errors.push(format!("stale {what} exception {k}: remove it"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../supervisor/src")
    }

    #[test]
    fn supervisor_structure_holds() {
        let found = scan(&src()).unwrap();
        assert!(found.files.len() > 50, "too few files read: {}", found.files.len());
        let (errors, notes) = check(&found);
        for n in &notes {
            println!("structure: {n}");
        }
        assert!(errors.is_empty(), "{} structure violations:\n{}\n{}", errors.len(), errors.join("\n"), notes.join("\n"));
    }

    #[test]
    fn module_docs_must_say_what_they_must_not_do() {
        assert!(says_must_not("//! Owns X. It must\n//! not do Y.\nuse a;"));
        assert!(!says_must_not("//! Owns X.\nuse a; // must not"));
        assert!(!says_must_not("use a;\n//! It must not do Y."));
        let late = format!("{}//! It must not do Y.\n", "//! line\n".repeat(DOC_LINES));
        assert!(!says_must_not(&late));
    }

    #[test]
    fn a_cycle_is_named_by_an_edge() {
        let e = |from: &str, to: &str| Edge { from: from.into(), to: to.into(), file: "f.rs".into(), line: 1, path: format!("crate::{to}") };
        let (a, b) = (e("release", "confine"), e("confine", "release"));
        let err = group_order(&[&a, &b]).unwrap_err();
        assert!(err.contains("release -> confine") || err.contains("confine -> release"), "{err}");
        assert!(group_order(&[&a]).is_ok());
    }

    #[test]
    fn super_paths_resolve_to_groups() {
        let mut found = Found::default();
        let text = "use super::logstore::X; fn f() { crate::sys::g(); format!(\"{}\", crate::boot::mount::DATA); }";
        let ast = syn::parse_file(text).unwrap();
        let mut w = Walker { file: "common/log.rs", group: "common".into(), module: module_of("common/log.rs"), found: &mut found };
        w.visit_file(&ast);
        let paths: Vec<&str> = found.edges.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["crate::sys::g", "crate::boot::mount::DATA"]);
        assert_eq!(found.fns, [("common/log.rs::f".to_string(), 1)]);
    }
}

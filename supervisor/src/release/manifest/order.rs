//! The checks of a whole release's manifests together: unique names, known
//! dependencies and the start order ([`start_order`]), in which a
//! dependency cycle is an error that names the cycle.
//!
//! It only orders and checks: it must not start anything (supervise starts
//! the containers in this order) and it must not recurse deeper than
//! [`SET_MAX`].

use heapless::Vec;

use super::{err, Manifest, ManifestError};

/// Check a whole set of manifests (a release's): each one's values, then
/// unique names, known dependencies, no cycle, then the gates.
pub fn validate_set(set: &[Manifest]) -> Result<(), ManifestError> {
    for m in set {
        m.validate_fields()?;
    }
    for (i, m) in set.iter().enumerate() {
        if set.iter().take(i).any(|o| o.name == m.name) {
            return Err(err(&m.name, "name", "is used by two containers"));
        }
    }
    for m in set {
        for (j, d) in m.after.iter().enumerate() {
            if !set.iter().any(|o| &o.name == d) {
                return Err(err(&m.name, format!("after[{j}]"), format!("`{d}` is not a container in this release")));
            }
        }
    }
    start_order(set)?;
    for m in set {
        m.check_gates()?;
    }
    Ok(())
}

/// Most containers a set may hold (the release limit).
pub const SET_MAX: usize = 32;

/// Indices into `set` in an order where each container comes after the ones
/// it names in `after`. A dependency cycle is an error that names the cycle.
/// Expects names unique and dependencies known (checked by [`validate_set`]);
/// unknown names are ignored here.
pub fn start_order(set: &[Manifest]) -> Result<Vec<usize, SET_MAX>, ManifestError> {
    if set.len() > SET_MAX {
        return Err(err("(release)", "containers", "too many containers"));
    }
    // 0 = unvisited, 1 = on the current path, 2 = done.
    let mut state = [0u8; SET_MAX];
    let mut order: Vec<usize, SET_MAX> = Vec::new();
    let mut path: Vec<usize, SET_MAX> = Vec::new();
    for root in 0..set.len() {
        visit(set, root, &mut state, &mut path, &mut order)?;
    }
    Ok(order)
}

fn visit(set: &[Manifest], i: usize, state: &mut [u8; SET_MAX], path: &mut Vec<usize, SET_MAX>, order: &mut Vec<usize, SET_MAX>) -> Result<(), ManifestError> {
    let (Some(m), Some(s)) = (set.get(i), state.get(i).copied()) else {
        return Ok(());
    };
    match s {
        2 => return Ok(()),
        1 => {
            let start = path.iter().position(|&p| p == i).unwrap_or(0);
            let mut text = std::string::String::new();
            for &p in path.iter().skip(start) {
                if let Some(pm) = set.get(p) {
                    text.push_str(&pm.name);
                    text.push_str(" -> ");
                }
            }
            text.push_str(&m.name);
            return Err(err(&m.name, "after", format!("dependency cycle: {text}")));
        }
        _ => {}
    }
    if let Some(s) = state.get_mut(i) {
        *s = 1;
    }
    // Depth is bounded by SET_MAX: a node on the path is never re-entered.
    let _ = path.push(i);
    for d in &m.after {
        if let Some(j) = set.iter().position(|o| &o.name == d) {
            visit(set, j, state, path, order)?;
        }
    }
    path.pop();
    if let Some(s) = state.get_mut(i) {
        *s = 2;
    }
    let _ = order.push(i);
    Ok(())
}

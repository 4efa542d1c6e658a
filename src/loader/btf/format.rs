//! C-like printing of BTF types. Total: every walk is depth-bounded and every call has an output
//! budget, so cycles, deep nesting and huge hostile inputs produce a marker instead of hanging.
//!
//! The budget counts everything emitted (names, keywords, punctuation, numbers), so a rendering is
//! never longer than its budget plus a few markers; [`Btf::format_all`]'s total is linear in the
//! size of the BTF (with a cap), so printing cannot amplify a small hostile blob.

use super::types::*;
use super::{Btf, MAX_RESOLVE_DEPTH};
use crate::escape::escape_str;

/// Output budget of one `format_type` call, in bytes (roughly).
pub(crate) const MAX_OUTPUT: usize = 64 * 1024;
/// Cap of the budget shared by all the types of one `format_all` call (a 6.18 vmlinux spends
/// ~30 MiB), so a hostile blob with many expensive types cannot make it run for minutes.
const MAX_ALL_OUTPUT: usize = 64 * 1024 * 1024;
/// `format_all`'s C-like budget: this many bytes per byte of BTF (types + strings), plus
/// [`ALL_OUTPUT_BASE`], up to `MAX_ALL_OUTPUT` (64 MiB).
pub const ALL_OUTPUT_PER_INPUT_BYTE: usize = 16;
/// See [`ALL_OUTPUT_PER_INPUT_BYTE`].
pub const ALL_OUTPUT_BASE: usize = 1024 * 1024;
/// Longest raw line (`[id] KIND 'name' fields`) with a `MAX_NAME` name, for bounds in tests.
pub const MAX_RAW_LINE: usize = MAX_NAME + 160;
/// How many anonymous struct/union/enum bodies may nest inside one another.
const MAX_EXPAND_DEPTH: u32 = 8;
/// Names longer than this are cut (hostile string sections can hold megabyte "names").
const MAX_NAME: usize = 512;
/// Marker for output cut by a budget or a depth bound.
pub(crate) const CUT: &str = "/* ... */";

struct Fmt<'a> {
    btf: &'a Btf,
    budget: usize,
}

/// `base` followed by a declarator (`"int"` + `"*p"` -> `"int *p"`).
fn join(base: &str, inner: &str) -> String {
    if inner.is_empty() {
        base.to_string()
    } else if inner.starts_with('[') {
        format!("{base}{inner}")
    } else {
        format!("{base} {inner}")
    }
}

impl<'a> Fmt<'a> {
    fn out_of_budget(&mut self, cost: usize) -> bool {
        match self.budget.checked_sub(cost) {
            Some(left) => {
                self.budget = left;
                false
            }
            None => {
                self.budget = 0;
                true
            }
        }
    }

    /// Charges `n` bytes of fixed text (keywords, punctuation, numbers) about to be emitted.
    fn lit(&mut self, n: usize) {
        let _ = self.out_of_budget(n);
    }

    /// The string at `off`, cut to [`MAX_NAME`] bytes, or a marker when it is not a valid string.
    fn name(&mut self, off: u32) -> String {
        let s = match self.btf.string_at(off) {
            Ok(s) => s,
            Err(_) => return format!("<bad name @{off}>"),
        };
        let mut end = s.len().min(MAX_NAME);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        // Names come from the object: printed through the one escaping function.
        let name = escape_str(&s[..end]);
        let _ = self.out_of_budget(name.len());
        if end < s.len() {
            format!("{name}...")
        } else {
            name
        }
    }

    /// Declaration of type `id` around declarator `inner` (a name, `*name`, `name[4]`, or "").
    /// `depth` counts reference hops; `expand` counts nested anonymous bodies.
    fn decl(&mut self, id: u32, inner: &str, depth: u32, expand: u32) -> String {
        // `inner` is copied at every level: charging it keeps FUNC_PROTO fan-out (params and return
        // type both expanding) from doing exponential work within the budget.
        if depth > MAX_RESOLVE_DEPTH || self.out_of_budget(inner.len().saturating_add(1)) {
            return join(CUT, inner);
        }
        if id == 0 {
            self.lit(5);
            return join("void", inner);
        }
        let t = match self.btf.type_by_id(id) {
            Ok(t) => t,
            Err(_) => {
                self.lit(30);
                return join(&format!("/* bad type [{id}] */"), inner);
            }
        };
        let direct_kind = |tid: u32| self.btf.kind_of(tid).unwrap_or(BtfKind::Void);
        match t {
            BtfType::Int { name_off, .. }
            | BtfType::Float { name_off, .. }
            | BtfType::Typedef { name_off, .. } => join(&self.name(*name_off), inner),
            BtfType::Struct { name_off, .. }
            | BtfType::Union { name_off, .. }
            | BtfType::Enum { name_off, .. }
            | BtfType::Enum64 { name_off, .. } => {
                let base = if *name_off == 0 {
                    self.body(id, depth, expand + 1)
                } else {
                    let kw = keyword(t.kind());
                    self.lit(kw.len() + 1);
                    format!("{kw} {}", self.name(*name_off))
                };
                join(&base, inner)
            }
            BtfType::Fwd { name_off, is_union } => {
                let kw = if *is_union { "union" } else { "struct" };
                self.lit(kw.len() + 1);
                join(&format!("{kw} {}", self.name(*name_off)), inner)
            }
            BtfType::Ptr { type_id } => {
                self.decl(*type_id, &format!("*{inner}"), depth + 1, expand)
            }
            BtfType::Const { type_id }
            | BtfType::Volatile { type_id }
            | BtfType::Restrict { type_id } => {
                let q = match t.kind() {
                    BtfKind::Const => "const",
                    BtfKind::Volatile => "volatile",
                    _ => "restrict",
                };
                self.lit(q.len() + 1);
                if direct_kind(*type_id) == BtfKind::Ptr {
                    self.decl(*type_id, &join(q, inner), depth + 1, expand)
                } else {
                    format!("{q} {}", self.decl(*type_id, inner, depth + 1, expand))
                }
            }
            BtfType::TypeTag { name_off, type_id } => {
                self.lit(36);
                let tag = format!(
                    "__attribute__((btf_type_tag(\"{}\")))",
                    self.name(*name_off)
                );
                self.decl(*type_id, &join(&tag, inner), depth + 1, expand)
            }
            BtfType::Array {
                elem_type, nelems, ..
            } => {
                self.lit(14);
                let inner = if inner.starts_with('*') {
                    format!("({inner})[{nelems}]")
                } else {
                    format!("{inner}[{nelems}]")
                };
                self.decl(*elem_type, &inner, depth + 1, expand)
            }
            BtfType::FuncProto { ret, params } => {
                let mut list = Vec::new();
                for (i, p) in params.iter().enumerate() {
                    if self.budget == 0 {
                        list.push(CUT.to_string());
                        break;
                    }
                    self.lit(2);
                    if p.type_id == 0 && p.name_off == 0 && i + 1 == params.len() {
                        list.push("...".to_string());
                        continue;
                    }
                    let pname = if p.name_off == 0 {
                        String::new()
                    } else {
                        self.name(p.name_off)
                    };
                    list.push(self.decl(p.type_id, &pname, depth + 1, expand));
                }
                let list = if list.is_empty() {
                    "void".to_string()
                } else {
                    list.join(", ")
                };
                let inner = if inner.starts_with('*') {
                    format!("({inner})({list})")
                } else {
                    format!("{inner}({list})")
                };
                self.decl(*ret, &inner, depth + 1, expand)
            }
            BtfType::Func {
                name_off,
                proto,
                linkage,
            } => {
                self.lit(8);
                let name = self.name(*name_off);
                let d = self.decl(*proto, &join(&name, inner), depth + 1, expand);
                format!("{}{d}", func_linkage(*linkage))
            }
            BtfType::Var {
                name_off,
                type_id,
                linkage,
            } => {
                self.lit(14);
                let name = self.name(*name_off);
                let d = self.decl(*type_id, &join(&name, inner), depth + 1, expand);
                format!("{}{d}", var_linkage(*linkage))
            }
            BtfType::Datasec { name_off, vars, .. } => {
                self.lit(12);
                let mut s = format!("SEC(\"{}\") {{", self.name(*name_off));
                for v in vars {
                    if self.budget == 0 {
                        s.push_str(&format!(" {CUT}"));
                        break;
                    }
                    self.lit(48);
                    let d = self.decl(v.type_id, "", depth + 1, expand);
                    s.push_str(&format!(" {d}; /* offset {} size {} */", v.offset, v.size));
                }
                self.lit(2);
                s.push_str(" }");
                join(&s, inner)
            }
            BtfType::DeclTag {
                name_off,
                type_id,
                component_idx,
            } => {
                self.lit(96);
                let what = if *component_idx < 0 {
                    format!("type [{type_id}]")
                } else {
                    format!("component {component_idx} of type [{type_id}]")
                };
                let tag = format!(
                    "__attribute__((btf_decl_tag(\"{}\"))) on {what}",
                    self.name(*name_off)
                );
                join(&tag, inner)
            }
        }
    }

    /// `struct name { members }`, `union ...`, or `enum name { values }`.
    fn body(&mut self, id: u32, depth: u32, expand: u32) -> String {
        let Ok(t) = self.btf.type_by_id(id) else {
            return format!("/* bad type [{id}] */");
        };
        let name = match t.name_off() {
            0 => String::new(),
            off => format!("{} ", self.name(off)),
        };
        let kw = keyword(t.kind());
        if expand > MAX_EXPAND_DEPTH {
            self.lit(kw.len() + CUT.len() + 6);
            return format!("{kw} {name}{{ {CUT} }}");
        }
        self.lit(kw.len() + 4);
        let mut s = format!("{kw} {name}{{");
        match t {
            BtfType::Struct { members, .. } | BtfType::Union { members, .. } => {
                for m in members {
                    if self.budget == 0 {
                        s.push_str(&format!(" {CUT}"));
                        break;
                    }
                    let mname = if m.name_off == 0 {
                        String::new()
                    } else {
                        self.name(m.name_off)
                    };
                    let d = self.decl(m.type_id, &mname, depth + 1, expand);
                    self.lit(2);
                    if m.bitfield_size != 0 {
                        self.lit(4);
                        s.push_str(&format!(" {d}:{};", m.bitfield_size));
                    } else {
                        s.push_str(&format!(" {d};"));
                    }
                }
            }
            BtfType::Enum { values, .. } | BtfType::Enum64 { values, .. } => {
                let signed = matches!(
                    t,
                    BtfType::Enum { signed: true, .. } | BtfType::Enum64 { signed: true, .. }
                );
                let mut first = true;
                for v in values {
                    if self.budget == 0 {
                        s.push_str(&format!(" {CUT}"));
                        break;
                    }
                    self.lit(25);
                    let vname = self.name(v.name_off);
                    let sep = if first { "" } else { "," };
                    first = false;
                    if signed {
                        s.push_str(&format!("{sep} {vname} = {}", v.value));
                    } else {
                        s.push_str(&format!("{sep} {vname} = {}", v.value as u64));
                    }
                }
            }
            _ => {}
        }
        self.lit(2);
        s.push_str(" }");
        s
    }
}

fn keyword(kind: BtfKind) -> &'static str {
    match kind {
        BtfKind::Union => "union",
        BtfKind::Enum | BtfKind::Enum64 => "enum",
        _ => "struct",
    }
}

fn func_linkage(linkage: u32) -> &'static str {
    match linkage {
        BTF_FUNC_STATIC => "static ",
        BTF_FUNC_GLOBAL => "",
        BTF_FUNC_EXTERN => "extern ",
        _ => "/* bad linkage */ ",
    }
}

fn var_linkage(linkage: u32) -> &'static str {
    match linkage {
        BTF_VAR_STATIC => "static ",
        BTF_VAR_GLOBAL_ALLOCATED => "",
        BTF_VAR_GLOBAL_EXTERN => "extern ",
        _ => "/* bad linkage */ ",
    }
}

fn int_encoding(encoding: u8) -> &'static str {
    match encoding {
        0 => "(none)",
        BTF_INT_SIGNED => "SIGNED",
        BTF_INT_CHAR => "CHAR",
        BTF_INT_BOOL => "BOOL",
        _ => "(bad)",
    }
}

impl Btf {
    /// A C-like one-line rendering of type `id`: structs, unions and enums show their body (nested
    /// named ones by name only), functions their prototype, VARs and FUNCs their linkage. Never
    /// panics; depth- and size-bounded (cut parts print as `/* ... */`).
    pub fn format_type(&self, id: u32) -> String {
        self.format_type_within(id, &mut MAX_OUTPUT.clone())
    }

    /// [`Btf::format_type`] with at most `min(*budget, MAX_OUTPUT)` to spend; takes what it spent off `budget`.
    fn format_type_within(&self, id: u32, budget: &mut usize) -> String {
        let start = (*budget).min(MAX_OUTPUT);
        let mut f = Fmt {
            btf: self,
            budget: start,
        };
        let s = match self.type_by_id(id) {
            Ok(
                BtfType::Struct { .. }
                | BtfType::Union { .. }
                | BtfType::Enum { .. }
                | BtfType::Enum64 { .. },
            ) => f.body(id, 0, 0),
            Ok(BtfType::Typedef { name_off, type_id }) => {
                let name = f.name(*name_off);
                format!("typedef {}", f.decl(*type_id, &name, 1, 0))
            }
            _ => f.decl(id, "", 0, 0),
        };
        *budget = budget.saturating_sub(start.saturating_sub(f.budget));
        s
    }

    /// The raw fields of type `id` as bpftool prints them: `[id] KIND 'name' field=value ...`.
    pub fn format_raw(&self, id: u32) -> String {
        let t = match self.type_by_id(id) {
            Ok(t) => t,
            Err(e) => return format!("[{id}] <{e}>"),
        };
        let mut f = Fmt {
            btf: self,
            budget: MAX_OUTPUT,
        };
        let name = match t.name_off() {
            0 => "(anon)".to_string(),
            off => format!("'{}'", f.name(off)),
        };
        let fields = match t {
            BtfType::Int {
                size,
                encoding,
                offset,
                bits,
                ..
            } => format!(
                "size={size} bits_offset={offset} nr_bits={bits} encoding={}",
                int_encoding(*encoding)
            ),
            BtfType::Ptr { type_id }
            | BtfType::Const { type_id }
            | BtfType::Volatile { type_id }
            | BtfType::Restrict { type_id }
            | BtfType::Typedef { type_id, .. }
            | BtfType::TypeTag { type_id, .. } => format!("type_id={type_id}"),
            BtfType::Array {
                elem_type,
                index_type,
                nelems,
            } => format!("type_id={elem_type} index_type_id={index_type} nr_elems={nelems}"),
            BtfType::Struct { size, members, .. } | BtfType::Union { size, members, .. } => {
                format!("size={size} vlen={}", members.len())
            }
            BtfType::Enum {
                size,
                signed,
                values,
                ..
            }
            | BtfType::Enum64 {
                size,
                signed,
                values,
                ..
            } => format!(
                "encoding={} size={size} vlen={}",
                if *signed { "SIGNED" } else { "UNSIGNED" },
                values.len()
            ),
            BtfType::Fwd { is_union, .. } => {
                format!("fwd_kind={}", if *is_union { "union" } else { "struct" })
            }
            BtfType::Func { proto, linkage, .. } => {
                let l = ["static", "global", "extern"];
                let l = l.get(*linkage as usize).copied().unwrap_or("(bad)");
                format!("type_id={proto} linkage={l}")
            }
            BtfType::FuncProto { ret, params } => {
                format!("ret_type_id={ret} vlen={}", params.len())
            }
            BtfType::Var {
                type_id, linkage, ..
            } => {
                let l = ["static", "global-alloc", "extern"];
                let l = l.get(*linkage as usize).copied().unwrap_or("(bad)");
                format!("type_id={type_id} linkage={l}")
            }
            BtfType::Datasec { size, vars, .. } => format!("size={size} vlen={}", vars.len()),
            BtfType::Float { size, .. } => format!("size={size}"),
            BtfType::DeclTag {
                type_id,
                component_idx,
                ..
            } => format!("type_id={type_id} component_idx={component_idx}"),
        };
        format!("[{id}] {} {name} {fields}", t.kind().name())
    }

    /// Every type, one per line: `[id] KIND 'name' fields  // C-like rendering`.
    /// Past a total budget, the C-like renderings are cut (`/* ... */`); the raw fields always print.
    pub fn format_all(&self) -> String {
        self.format_all_within(self.format_all_budget())
    }

    /// The C-like budget of [`Btf::format_all`]: linear in the BTF's size, capped.
    pub fn format_all_budget(&self) -> usize {
        // The encoded size: 12 bytes per type plus its members/values/params/vars.
        let input = self
            .types()
            .iter()
            .map(|t| {
                12 + match t {
                    BtfType::Struct { members, .. } | BtfType::Union { members, .. } => {
                        12 * members.len()
                    }
                    BtfType::Enum { values, .. } => 8 * values.len(),
                    BtfType::Enum64 { values, .. } => 12 * values.len(),
                    BtfType::FuncProto { params, .. } => 8 * params.len(),
                    BtfType::Datasec { vars, .. } => 12 * vars.len(),
                    BtfType::Array { .. } => 12,
                    BtfType::Int { .. } | BtfType::Var { .. } | BtfType::DeclTag { .. } => 4,
                    _ => 0,
                }
            })
            .fold(self.strings().len(), usize::saturating_add);
        input
            .saturating_mul(ALL_OUTPUT_PER_INPUT_BYTE)
            .saturating_add(ALL_OUTPUT_BASE)
            .min(MAX_ALL_OUTPUT)
    }

    pub(crate) fn format_all_within(&self, mut budget: usize) -> String {
        let mut out = String::new();
        for id in 1..self.types_len() {
            // One line per type: names are escaped (no line breaks or terminal controls).
            let c_like = self.format_type_within(id, &mut budget);
            out.push_str(&self.format_raw(id));
            out.push_str("  // ");
            out.push_str(&c_like);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` FUNC_PROTOs, each returning the next and taking the next as its parameter (the last
    /// points back to the first): every rendering fans out into both.
    fn proto_chain(n: u32) -> Btf {
        let mut btf = Btf::new();
        for id in 1..=n {
            let next = if id == n { 1 } else { id + 1 };
            btf.add_type(BtfType::FuncProto {
                ret: next,
                params: vec![Param {
                    name_off: 0,
                    type_id: next,
                }],
            });
        }
        btf
    }

    #[test]
    fn proto_fan_out_stays_within_the_output_budget() {
        // Before inner declarators were charged, one such call did ~2^32 copies of a growing string.
        let btf = proto_chain(40);
        let s = btf.format_type(1);
        assert!(s.contains(CUT), "{}", &s[..s.len().min(200)]);
        assert!(s.len() <= 2 * MAX_OUTPUT, "{} bytes", s.len());
    }

    #[test]
    fn format_all_shares_one_budget_across_types() {
        let btf = proto_chain(200);
        let all = btf.format_all_within(MAX_OUTPUT);
        assert_eq!(all.lines().count(), 200, "one line per type, cut or not");
        // 200 types could each spend MAX_OUTPUT; together they get MAX_OUTPUT (plus the raw fields).
        assert!(all.len() <= 3 * MAX_OUTPUT, "{} bytes", all.len());
        assert!(all
            .lines()
            .last()
            .is_some_and(|l| l.ends_with(&format!("// {CUT}"))));
    }
}

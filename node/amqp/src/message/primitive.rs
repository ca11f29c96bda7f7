//! Canonical (smallest) encodings of the primitives messages and annotations
//! are built from. Each appends one encoded value to `out`.

use bytes::BufMut;

use crate::codec::format_code as fc;

pub fn null<B: BufMut + ?Sized>(out: &mut B) {
    out.put_u8(fc::NULL);
}
pub fn boolean<B: BufMut + ?Sized>(out: &mut B, v: bool) {
    out.put_u8(if v {
        fc::BOOLEAN_TRUE
    } else {
        fc::BOOLEAN_FALSE
    });
}
pub fn ubyte<B: BufMut + ?Sized>(out: &mut B, v: u8) {
    out.put_slice(&[fc::UBYTE, v]);
}
pub fn uint<B: BufMut + ?Sized>(out: &mut B, v: u32) {
    match v {
        0 => out.put_u8(fc::UINT0),
        1..=255 => out.put_slice(&[fc::SMALLUINT, v as u8]),
        _ => {
            out.put_u8(fc::UINT);
            out.put_u32(v);
        }
    }
}
pub fn ulong<B: BufMut + ?Sized>(out: &mut B, v: u64) {
    match v {
        0 => out.put_u8(fc::ULONG0),
        1..=255 => out.put_slice(&[fc::SMALLULONG, v as u8]),
        _ => {
            out.put_u8(fc::ULONG);
            out.put_u64(v);
        }
    }
}
pub fn long<B: BufMut + ?Sized>(out: &mut B, v: i64) {
    if (-128..=127).contains(&v) {
        out.put_slice(&[fc::SMALLLONG, v as i8 as u8]);
    } else {
        out.put_u8(fc::LONG);
        out.put_i64(v);
    }
}
/// Milliseconds since the Unix epoch.
pub fn timestamp<B: BufMut + ?Sized>(out: &mut B, v: i64) {
    out.put_u8(fc::TIMESTAMP);
    out.put_i64(v);
}
pub fn uuid<B: BufMut + ?Sized>(out: &mut B, v: &[u8; 16]) {
    out.put_u8(fc::UUID);
    out.put_slice(v);
}
/// `code8` with a one-byte size when it fits, else `code32`.
fn variable<B: BufMut + ?Sized>(out: &mut B, (code8, code32): (u8, u8), v: &[u8]) {
    if v.len() <= 255 {
        out.put_slice(&[code8, v.len() as u8]);
    } else {
        out.put_u8(code32);
        out.put_u32(v.len() as u32);
    }
    out.put_slice(v);
}
pub fn binary<B: BufMut + ?Sized>(out: &mut B, v: &[u8]) {
    variable(out, (fc::VBIN8, fc::VBIN32), v);
}
pub fn string<B: BufMut + ?Sized>(out: &mut B, v: &str) {
    variable(out, (fc::STR8, fc::STR32), v.as_bytes());
}
pub fn symbol<B: BufMut + ?Sized>(out: &mut B, v: &str) {
    variable(out, (fc::SYM8, fc::SYM32), v.as_bytes());
}
/// `code8` with one-byte size and count when they fit, else `code32`.
fn compound<B: BufMut + ?Sized>(
    out: &mut B,
    (code8, code32): (u8, u8),
    count: usize,
    items: &[&[u8]],
) {
    let len: usize = items.iter().map(|i| i.len()).sum();
    if count == 0 && code8 == fc::LIST8 {
        out.put_u8(fc::LIST0);
        return;
    }
    if len < 255 && count <= 255 {
        out.put_slice(&[code8, (len + 1) as u8, count as u8]);
    } else {
        out.put_u8(code32);
        out.put_u32((len + 4) as u32);
        out.put_u32(count as u32);
    }
    for i in items {
        out.put_slice(i);
    }
}
/// A list of already-encoded elements (list0 when empty).
pub fn list<B: BufMut + ?Sized>(out: &mut B, items: &[&[u8]]) {
    compound(out, (fc::LIST8, fc::LIST32), items.len(), items);
}
/// A map of already-encoded keys and values.
pub fn map<B: BufMut + ?Sized>(out: &mut B, entries: &[(&[u8], &[u8])]) {
    let flat: Vec<&[u8]> = entries.iter().flat_map(|(k, v)| [*k, *v]).collect();
    compound(out, (fc::MAP8, fc::MAP32), flat.len(), &flat);
}
/// A list of strings (e.g. the router's `x-opt-qd.trace`).
pub fn string_list<B: BufMut + ?Sized>(out: &mut B, items: &[&str]) {
    let encoded: Vec<Vec<u8>> = items
        .iter()
        .map(|s| {
            let mut v = Vec::with_capacity(s.len() + 5);
            string(&mut v, s);
            v
        })
        .collect();
    let refs: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    list(out, &refs);
}
/// Encodes one value with `f` into a new vector.
pub fn to_vec(f: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut v = Vec::new();
    f(&mut v);
    v
}

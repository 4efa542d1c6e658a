//! Split BTF: a kernel module's BTF (`/sys/kernel/btf/<module>`) continues the type ids and the
//! string offsets of its base (vmlinux). Type id `n` of the split part is `base.types_len() + n - 1`
//! and string offset `o >= base.strings().len()` lives at `o - base_len` of the split part, so the
//! combined view is simply the base followed by the split part.

use super::{parse, Btf, BtfError};

impl Btf {
    /// Parses `data` as split BTF on top of `base` and returns the combined BTF (base types first,
    /// ids unchanged). Every reference is checked against the combined ranges.
    pub fn parse_split(data: &[u8], base: &Btf) -> Result<Btf, BtfError> {
        let hdr = parse::parse_header(data)?;
        let strings = data.get(hdr.strings.clone()).unwrap_or(&[]);
        // A split string section continues the base's: it does not start with the empty string
        // (offset `base_len` is its first real string), but it must end with a NUL.
        if strings.last().is_some_and(|&b| b != 0) {
            return Err(BtfError::BadStringSection {
                offset: hdr.strings.start,
                len: strings.len() as u32,
                reason: "last string is not NUL-terminated",
            });
        }
        let type_bytes = data.get(hdr.types.clone()).unwrap_or(&[]);
        let (split_types, split_kflags) = parse::parse_types(parse::Reader {
            data: type_bytes,
            big_endian: hdr.big_endian,
        })?;
        let first = base.types_len();
        let mut types = Vec::with_capacity(base.types.len() + split_types.len());
        types.extend_from_slice(&base.types);
        types.extend(split_types);
        let mut all_strings = Vec::with_capacity(base.strings.len() + strings.len());
        all_strings.extend_from_slice(&base.strings);
        all_strings.extend_from_slice(strings);
        // Only the split part needs checking: the base was checked when it was parsed.
        parse::check_refs(&types, all_strings.len() as u32, base.types.len())?;
        let mut tag_kflags = base.tag_kflags.clone();
        tag_kflags.extend(split_kflags.into_iter().map(|id| id + first - 1));
        Ok(Btf {
            types,
            strings: all_strings,
            big_endian: hdr.big_endian,
            tag_kflags,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loader::btf::{BtfType, Member};

    #[test]
    fn split_continues_ids_and_strings() {
        let mut base = Btf::new();
        let n = base.add_string("int");
        let int = base.add_type(BtfType::Int {
            name_off: n,
            size: 4,
            encoding: 1,
            offset: 0,
            bits: 32,
        });
        let base = Btf::parse(&base.to_bytes()).unwrap();
        // Split part: strings "\0mod_struct\0x\0" at offsets base_len.., one struct using `int`.
        let base_len = base.strings().len() as u32;
        let mut split = Btf::new();
        let sn = split.add_string("mod_struct") + base_len;
        let xn = split.add_string("x") + base_len;
        split.add_type(BtfType::Struct {
            name_off: sn,
            size: 4,
            members: vec![Member {
                name_off: xn,
                type_id: int,
                offset_bits: 0,
                bitfield_size: 0,
            }],
        });
        // Encoding the split part alone fails check_refs in Btf::parse but not in parse_split.
        let bytes = split.to_bytes();
        let all = Btf::parse_split(&bytes, &base).unwrap();
        assert_eq!(all.types_len(), 3);
        assert_eq!(all.name_of(2).unwrap(), "mod_struct");
        assert_eq!(all.name_of(1).unwrap(), "int");
        // Real module BTF: the split string section starts with its first string, no NUL.
        let mut raw = bytes.clone();
        let str_off = u32::from_ne_bytes(raw[16..20].try_into().unwrap()) as usize;
        let str_len = u32::from_ne_bytes(raw[20..24].try_into().unwrap()) as usize;
        let start = 24 + str_off;
        raw.remove(start); // drop the leading NUL
        raw[20..24].copy_from_slice(&((str_len - 1) as u32).to_ne_bytes());
        // (Offsets shift by one, so the names differ; parsing must still accept the layout.)
        assert!(Btf::parse_split(&raw, &base).is_ok());
        // A reference past the combined range is refused.
        let mut bad = Btf::new();
        bad.add_type(BtfType::Ptr { type_id: 9 });
        assert!(Btf::parse_split(&bad.to_bytes(), &base).is_err());
    }
}

//! Test helpers: a raw BTF / .BTF.ext writer that is independent of the encoder under test (it writes
//! the on-disk layout from include/uapi/linux/btf.h directly, in either byte order).

/// Raw BTF under construction.
pub struct RawBtf {
    pub big_endian: bool,
    pub types: Vec<u8>,
    pub strings: Vec<u8>,
    pub count: u32,
}

impl RawBtf {
    pub fn new(big_endian: bool) -> RawBtf {
        RawBtf {
            big_endian,
            types: Vec::new(),
            strings: vec![0],
            count: 0,
        }
    }

    fn w(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    /// Appends a string; returns its offset.
    pub fn s(&mut self, s: &str) -> u32 {
        let off = self.strings.len() as u32;
        self.strings.extend_from_slice(s.as_bytes());
        self.strings.push(0);
        off
    }

    /// Appends a raw u32 to the type section.
    pub fn u32(&mut self, v: u32) {
        let b = self.w(v);
        self.types.extend_from_slice(&b);
    }

    /// Appends a type header; returns the new type id.
    pub fn ty(
        &mut self,
        name_off: u32,
        kind: u32,
        vlen: u32,
        kflag: bool,
        size_or_type: u32,
    ) -> u32 {
        self.u32(name_off);
        self.u32((u32::from(kflag) << 31) | (kind << 24) | vlen);
        self.u32(size_or_type);
        self.count += 1;
        self.count
    }

    pub fn int(&mut self, name: &str, size: u32, encoding: u32, bits: u32) -> u32 {
        let n = self.s(name);
        let id = self.ty(n, 1, 0, false, size);
        self.u32((encoding << 24) | bits);
        id
    }

    /// Header fields: (magic, version, flags, hdr_len, type_off, type_len, str_off, str_len).
    pub fn header(&self) -> (u16, u8, u8, u32, u32, u32, u32, u32) {
        let tl = self.types.len() as u32;
        (0xeb9f, 1, 0, 24, 0, tl, tl, self.strings.len() as u32)
    }

    /// The blob with a custom header.
    pub fn bytes_with(&self, h: (u16, u8, u8, u32, u32, u32, u32, u32)) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&if self.big_endian {
            h.0.to_be_bytes()
        } else {
            h.0.to_le_bytes()
        });
        out.push(h.1);
        out.push(h.2);
        for v in [h.3, h.4, h.5, h.6, h.7] {
            out.extend_from_slice(&self.w(v));
        }
        // Pad a longer header with zeros.
        while out.len() < h.3 as usize && out.len() < 4096 {
            out.push(0);
        }
        out.extend_from_slice(&self.types);
        out.extend_from_slice(&self.strings);
        out
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.bytes_with(self.header())
    }
}

/// Builds a blob that uses every kind once. Returns the writer (ids are listed in the body).
///
/// ids: 1 int, 2 ptr->1, 3 array[4] of 1 idx 1, 4 struct s {int a; int b:3 @32}, 5 union u {int x; ptr y},
/// 6 enum e {A=-1 (signed), B=2}, 7 fwd union f, 8 typedef t -> 1, 9 volatile -> 1, 10 const -> 2,
/// 11 restrict -> 2, 12 func_proto int(int a, ...), 13 func main -> 12 global, 14 var v -> 1 global,
/// 15 datasec .data {14 @0 size 4}, 16 float double 8, 17 decl_tag "tag" -> 4 comp 0,
/// 18 type_tag "user" -> 1, 19 enum64 e64 {BIG=0x1_0000_0001}, 20 ptr -> 18.
pub fn all_kinds(big_endian: bool) -> RawBtf {
    let mut b = RawBtf::new(big_endian);
    b.int("int", 4, 1, 32); // 1
    b.ty(0, 2, 0, false, 1); // 2 ptr
    b.ty(0, 3, 0, false, 0); // 3 array
    b.u32(1);
    b.u32(1);
    b.u32(4);
    let (s, a, bb) = (b.s("s"), b.s("a"), b.s("b"));
    b.ty(s, 4, 2, true, 8); // 4 struct, kind_flag: bitfields
    b.u32(a);
    b.u32(1);
    b.u32(0);
    b.u32(bb);
    b.u32(1);
    b.u32((3 << 24) | 32);
    let (u, x, y) = (b.s("u"), b.s("x"), b.s("y"));
    b.ty(u, 5, 2, false, 8); // 5 union
    b.u32(x);
    b.u32(1);
    b.u32(0);
    b.u32(y);
    b.u32(2);
    b.u32(0);
    let (e, ea, eb) = (b.s("e"), b.s("A"), b.s("B"));
    b.ty(e, 6, 2, true, 4); // 6 signed enum
    b.u32(ea);
    b.u32(u32::MAX);
    b.u32(eb);
    b.u32(2);
    let f = b.s("f");
    b.ty(f, 7, 0, true, 0); // 7 fwd union
    let t = b.s("t");
    b.ty(t, 8, 0, false, 1); // 8 typedef
    b.ty(0, 9, 0, false, 1); // 9 volatile
    b.ty(0, 10, 0, false, 2); // 10 const
    b.ty(0, 11, 0, false, 2); // 11 restrict
    let pa = b.s("a");
    b.ty(0, 13, 2, false, 1); // 12 func_proto
    b.u32(pa);
    b.u32(1);
    b.u32(0);
    b.u32(0);
    let m = b.s("main");
    b.ty(m, 12, 1, false, 12); // 13 func global
    let v = b.s("v");
    b.ty(v, 14, 0, false, 1); // 14 var
    b.u32(1);
    let d = b.s(".data");
    b.ty(d, 15, 1, false, 4); // 15 datasec
    b.u32(14);
    b.u32(0);
    b.u32(4);
    let fl = b.s("double");
    b.ty(fl, 16, 0, false, 8); // 16 float
    let tag = b.s("tag");
    b.ty(tag, 17, 0, false, 4); // 17 decl_tag
    b.u32(0);
    let user = b.s("user");
    b.ty(user, 18, 0, false, 1); // 18 type_tag
    let (e64, big) = (b.s("e64"), b.s("BIG"));
    b.ty(e64, 19, 1, false, 8); // 19 enum64
    b.u32(big);
    b.u32(1);
    b.u32(1);
    b.ty(0, 2, 0, false, 18); // 20 ptr -> type_tag
    b
}

/// Tiny deterministic PRNG (xorshift) for mutation tests.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

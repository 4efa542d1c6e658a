//! A small DEFLATE (RFC 1951) decoder with the gzip wrapper (RFC 1952), for /proc/config.gz
//! (`.kconfig` externs). Bounded: the output is capped and every read is checked, so a corrupt
//! or hostile stream gives an error, never a panic or an unbounded allocation.

/// Largest output we produce (a kernel config is ~200 KiB).
pub const MAX_OUTPUT: usize = 16 << 20;

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    bit: u32,
    nbits: u32,
}

impl Bits<'_> {
    fn need(&mut self, n: u32) -> Result<u32, String> {
        while self.nbits < n {
            let b = *self.data.get(self.pos).ok_or("truncated deflate stream")?;
            self.pos += 1;
            self.bit |= u32::from(b) << self.nbits;
            self.nbits += 8;
        }
        let v = self.bit & ((1u32 << n) - 1);
        self.bit >>= n;
        self.nbits -= n;
        Ok(v)
    }
}

/// Canonical Huffman code: counts per length and symbols in code order.
struct Huffman {
    count: [u16; 16],
    symbol: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Huffman, String> {
        let mut count = [0u16; 16];
        for &l in lengths {
            count[l as usize] += 1;
        }
        let mut offs = [0u16; 16];
        for i in 1..15 {
            offs[i + 1] = offs[i] + count[i];
        }
        let mut symbol = vec![0u16; lengths.len()];
        for (s, &l) in lengths.iter().enumerate() {
            if l != 0 {
                symbol[offs[l as usize] as usize] = s as u16;
                offs[l as usize] += 1;
            }
        }
        count[0] = 0;
        Ok(Huffman { count, symbol })
    }

    fn decode(&self, b: &mut Bits<'_>) -> Result<u16, String> {
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= b.need(1)? as i32;
            let count = i32::from(self.count[len]);
            if code - count < first {
                return self
                    .symbol
                    .get((index + (code - first)) as usize)
                    .copied()
                    .ok_or_else(|| "bad Huffman code".to_string());
            }
            index += count;
            first += count;
            first <<= 1;
            code <<= 1;
        }
        Err("bad Huffman code".into())
    }
}

const LBASE: [u16; 29] = [
    3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115, 131,
    163, 195, 227, 258,
];
const LEXT: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
const DBASE: [u16; 30] = [
    1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
    2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
];
const DEXT: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];

fn codes(b: &mut Bits<'_>, out: &mut Vec<u8>, lit: &Huffman, dist: &Huffman) -> Result<(), String> {
    loop {
        let sym = lit.decode(b)?;
        match sym {
            0..=255 => out.push(sym as u8),
            256 => return Ok(()),
            _ => {
                let i = usize::from(sym - 257);
                let len = usize::from(*LBASE.get(i).ok_or("bad length code")?)
                    + b.need(u32::from(LEXT[i]))? as usize;
                let d = usize::from(dist.decode(b)?);
                let dist = usize::from(*DBASE.get(d).ok_or("bad distance code")?)
                    + b.need(u32::from(DEXT[d]))? as usize;
                if dist > out.len() {
                    return Err("distance past the start of the output".into());
                }
                for _ in 0..len {
                    out.push(out[out.len() - dist]);
                }
            }
        }
        if out.len() > MAX_OUTPUT {
            return Err(format!("output larger than {MAX_OUTPUT} bytes"));
        }
    }
}

/// Decodes a raw DEFLATE stream.
pub fn inflate(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut b = Bits {
        data,
        pos: 0,
        bit: 0,
        nbits: 0,
    };
    let mut out = Vec::new();
    loop {
        let last = b.need(1)?;
        match b.need(2)? {
            0 => {
                b.bit = 0;
                b.nbits = 0;
                let hdr = data.get(b.pos..b.pos + 4).ok_or("truncated stored block")?;
                let len = usize::from(u16::from_le_bytes([hdr[0], hdr[1]]));
                b.pos += 4;
                let chunk = data
                    .get(b.pos..b.pos + len)
                    .ok_or("truncated stored block")?;
                out.extend_from_slice(chunk);
                b.pos += len;
            }
            1 => {
                let mut l = [8u8; 288];
                l[144..256].fill(9);
                l[256..280].fill(7);
                let lit = Huffman::new(&l)?;
                let dist = Huffman::new(&[5u8; 30])?;
                codes(&mut b, &mut out, &lit, &dist)?;
            }
            2 => {
                let nlen = b.need(5)? as usize + 257;
                let ndist = b.need(5)? as usize + 1;
                let ncode = b.need(4)? as usize + 4;
                const ORDER: [usize; 19] = [
                    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
                ];
                let mut cl = [0u8; 19];
                for &o in ORDER.iter().take(ncode) {
                    cl[o] = b.need(3)? as u8;
                }
                let clh = Huffman::new(&cl)?;
                let mut lengths = vec![0u8; nlen + ndist];
                let mut i = 0;
                while i < nlen + ndist {
                    let sym = clh.decode(&mut b)?;
                    let (val, rep) = match sym {
                        0..=15 => (sym as u8, 1),
                        16 => (
                            *lengths
                                .get(i.wrapping_sub(1))
                                .ok_or("repeat with no length")?,
                            3 + b.need(2)? as usize,
                        ),
                        17 => (0, 3 + b.need(3)? as usize),
                        _ => (0, 11 + b.need(7)? as usize),
                    };
                    if i + rep > lengths.len() {
                        return Err("code lengths overflow".into());
                    }
                    lengths[i..i + rep].fill(val);
                    i += rep;
                }
                let lit = Huffman::new(&lengths[..nlen])?;
                let dist = Huffman::new(&lengths[nlen..])?;
                codes(&mut b, &mut out, &lit, &dist)?;
            }
            _ => return Err("invalid block type 3".into()),
        }
        if last == 1 {
            return Ok(out);
        }
    }
}

/// Decodes a gzip file (one member).
pub fn gunzip(data: &[u8]) -> Result<Vec<u8>, String> {
    if data.len() < 18 || data[0] != 0x1f || data[1] != 0x8b || data[2] != 8 {
        return Err("not a gzip file".into());
    }
    let flags = data[3];
    let mut pos = 10;
    if flags & 4 != 0 {
        let x = data.get(pos..pos + 2).ok_or("truncated gzip header")?;
        pos += 2 + usize::from(u16::from_le_bytes([x[0], x[1]]));
    }
    for bit in [8u8, 16] {
        if flags & bit != 0 {
            let rest = data.get(pos..).ok_or("truncated gzip header")?;
            pos += rest
                .iter()
                .position(|&c| c == 0)
                .ok_or("truncated gzip header")?
                + 1;
        }
    }
    if flags & 2 != 0 {
        pos += 2;
    }
    inflate(data.get(pos..).ok_or("truncated gzip header")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_fixed_and_hostile() {
        // "hello" stored, and "hello hello hello" compressed with fixed codes (zlib level 9, raw).
        assert_eq!(
            inflate(&[1, 5, 0, 0xfa, 0xff, b'h', b'e', b'l', b'l', b'o']).unwrap(),
            b"hello"
        );
        let fixed = [203, 72, 205, 201, 201, 87, 200, 64, 144, 0];
        assert_eq!(inflate(&fixed).unwrap(), b"hello hello hello");
        assert!(inflate(&[]).is_err());
        assert!(inflate(&[0xff; 64]).is_err());
        assert!(gunzip(b"not gzip at all, sorry").is_err());
    }

    #[test]
    fn proc_config_gz_when_present() {
        let Ok(data) = std::fs::read("/proc/config.gz") else {
            return;
        };
        let text = gunzip(&data).unwrap();
        assert!(String::from_utf8_lossy(&text).contains("CONFIG_BPF=y"));
    }
}

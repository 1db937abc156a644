//! A hand-written JSON-RPC envelope scanner: method, id and params.name in one pass, building
//! nothing. It checks structure (strings, escapes, bracket nesting) but not the grammar of numbers
//! and literals, and compares keys undecoded (an escaped key is not recognised).

/// What the scanner found: raw slices (string contents without quotes, still escaped; the id as
/// written).
pub struct Peek<'a> {
    pub method: Option<&'a [u8]>,
    pub id: Option<&'a [u8]>,
    pub name: Option<&'a [u8]>,
}

struct S<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> S<'a> {
    #[inline]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\r' | b'\t') = self.b.get(self.i) {
            self.i += 1;
        }
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn bump(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    #[inline]
    fn expect(&mut self, c: u8) -> Option<()> {
        (self.bump()? == c).then_some(())
    }

    /// A string; its contents (between the quotes).
    fn string(&mut self) -> Option<&'a [u8]> {
        self.expect(b'"')?;
        let start = self.i;
        loop {
            let rest = self.b.get(self.i..)?;
            let off = rest.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20)?;
            self.i += off;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Some(&self.b[start..self.i - 1]);
                }
                b'\\' => self.i += 2,
                _ => return None,
            }
        }
    }

    /// Skip one value of any kind.
    fn value(&mut self) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' | b'[' => self.nested(),
            _ => {
                let start = self.i;
                while let Some(b'0'..=b'9' | b'a'..=b'z' | b'A'..=b'Z' | b'.' | b'+' | b'-') = self.peek() {
                    self.i += 1;
                }
                (self.i > start).then_some(())
            }
        }
    }

    /// Skip an object or array, tracking up to 64 levels of nesting (1 bit each: object or array).
    fn nested(&mut self) -> Option<()> {
        let mut stack: u64 = 0;
        let mut depth = 0u32;
        loop {
            match self.peek()? {
                b'"' => {
                    self.string()?;
                    continue;
                }
                c @ (b'{' | b'[') => {
                    if depth == 64 {
                        return None;
                    }
                    stack = (stack << 1) | u64::from(c == b'{');
                    depth += 1;
                }
                c @ (b'}' | b']') => {
                    if depth == 0 || (stack & 1 == 1) != (c == b'}') {
                        return None;
                    }
                    stack >>= 1;
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return Some(());
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
    }

    /// Walk an object's members, handing each key to `f`, which consumes the value.
    fn members(&mut self, mut f: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        self.ws();
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            self.expect(b':')?;
            self.ws();
            f(self, key)?;
            self.ws();
            match self.bump()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }
}

/// Scan a JSON-RPC message; `None` if it is not a well-formed object.
pub fn peek(b: &[u8]) -> Option<Peek<'_>> {
    let mut s = S { b, i: 0 };
    let mut out = Peek { method: None, id: None, name: None };
    s.ws();
    s.members(|s, key| match key {
        b"method" if s.peek() == Some(b'"') => {
            out.method = Some(s.string()?);
            Some(())
        }
        b"id" => {
            let start = s.i;
            s.value()?;
            out.id = Some(&s.b[start..s.i]);
            Some(())
        }
        b"params" if s.peek() == Some(b'{') => s.members(|s, key| match key {
            b"name" if s.peek() == Some(b'"') => {
                out.name = Some(s.string()?);
                Some(())
            }
            _ => s.value(),
        }),
        _ => s.value(),
    })?;
    s.ws();
    (s.i == b.len()).then_some(out)
}

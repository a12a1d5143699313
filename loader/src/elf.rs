//! ELF pre-check: decides from the bytes already read (never by running anything)
//! whether a file is a complete shared library for this host that exports the
//! provtarget root module.
//!
//! Why before `dlopen`: the dynamic linker runs a library's initialisers before any of
//! our checks can look at its exports, and it maps segments straight from the file, so
//! a truncated copy of a real plugin kills the process with SIGBUS inside `dlopen`
//! (see DESIGN.md §3). Every read here is bounds-checked with checked arithmetic; a
//! malformed file yields an [`ElfProblem`], never a panic.
//!
//! Hand-written rather than the `object` crate: we need a dozen header fields and one
//! symbol lookup, and a small parser whose every read is visible is easier to audit
//! than a general-purpose one (and keeps the loader's dependency tree tiny).

/// Why a file is not a loadable provtarget plugin library. The texts say what is
/// wrong, without the path or the fix (the caller adds both).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ElfProblem {
    /// Not an ELF shared library for this host, or malformed.
    Format(String),
    /// Not a complete file: some header or segment lies past its end.
    Truncated(String),
    /// A well-formed shared library that does not export the root module.
    NoRootModule(String),
}

const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ELFDATA2MSB: u8 = 2;
const EV_CURRENT: u8 = 1;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PN_XNUM: u16 = 0xffff;
const SHT_NOBITS: u32 = 8;
const SHT_DYNSYM: u32 = 11;
const SHN_UNDEF: u16 = 0;

/// The ELF class of this host (`ELFCLASS64` on 64-bit targets).
const HOST_CLASS: u8 = if cfg!(target_pointer_width = "64") {
    ELFCLASS64
} else {
    ELFCLASS32
};

/// The ELF data encoding of this host.
const HOST_DATA: u8 = if cfg!(target_endian = "little") {
    ELFDATA2LSB
} else {
    ELFDATA2MSB
};

/// `e_machine` values of the architectures we know, with their names.
const MACHINES: &[(u16, &str)] = &[
    (3, "x86"),
    (8, "mips"),
    (20, "powerpc"),
    (21, "powerpc64"),
    (22, "s390x"),
    (40, "arm"),
    (62, "x86_64"),
    (183, "aarch64"),
    (243, "riscv64"),
    (258, "loongarch64"),
];

/// This host's `e_machine`, when we know it. For an architecture missing from
/// [`MACHINES`] the machine check is left to the dynamic linker.
fn host_machine() -> Option<u16> {
    let arch = std::env::consts::ARCH;
    let arch = match arch {
        "riscv64gc" => "riscv64",
        "mips64" => "mips",
        other => other,
    };
    MACHINES.iter().find(|(_, n)| *n == arch).map(|(m, _)| *m)
}

fn machine_name(machine: u16) -> String {
    match MACHINES.iter().find(|(m, _)| *m == machine) {
        Some((_, name)) => (*name).to_string(),
        None => format!("ELF machine {machine}"),
    }
}

/// Bounds-checked, endian-aware reads of ELF fields.
struct Reader<'a> {
    data: &'a [u8],
    little: bool,
    wide: bool,
}

impl<'a> Reader<'a> {
    fn bytes(&self, offset: u64, len: u64) -> Option<&'a [u8]> {
        let start = usize::try_from(offset).ok()?;
        let len = usize::try_from(len).ok()?;
        let end = start.checked_add(len)?;
        self.data.get(start..end)
    }

    fn array<const N: usize>(&self, offset: u64) -> Option<[u8; N]> {
        self.bytes(offset, N as u64)?.try_into().ok()
    }

    fn u8(&self, offset: u64) -> Option<u8> {
        self.array::<1>(offset).map(|b| b[0])
    }

    fn u16(&self, offset: u64) -> Option<u16> {
        let b = self.array::<2>(offset)?;
        Some(if self.little {
            u16::from_le_bytes(b)
        } else {
            u16::from_be_bytes(b)
        })
    }

    fn u32(&self, offset: u64) -> Option<u32> {
        let b = self.array::<4>(offset)?;
        Some(if self.little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn u64(&self, offset: u64) -> Option<u64> {
        let b = self.array::<8>(offset)?;
        Some(if self.little {
            u64::from_le_bytes(b)
        } else {
            u64::from_be_bytes(b)
        })
    }

    /// An address- or offset-sized field: 8 bytes in ELF64, 4 in ELF32.
    fn word(&self, offset: u64) -> Option<u64> {
        if self.wide {
            self.u64(offset)
        } else {
            self.u32(offset).map(u64::from)
        }
    }
}

/// Field offsets and sizes that differ between ELF32 and ELF64.
struct Layout {
    ehdr_size: u64,
    e_phoff: u64,
    e_shoff: u64,
    e_phentsize: u64,
    phdr_size: u64,
    p_offset: u64,
    p_filesz: u64,
    shdr_size: u64,
    sh_offset: u64,
    sh_size: u64,
    sh_link: u64,
    sh_info: u64,
    sh_entsize: u64,
    sym_size: u64,
    st_shndx: u64,
}

const LAYOUT64: Layout = Layout {
    ehdr_size: 64,
    e_phoff: 32,
    e_shoff: 40,
    e_phentsize: 54,
    phdr_size: 56,
    p_offset: 8,
    p_filesz: 32,
    shdr_size: 64,
    sh_offset: 24,
    sh_size: 32,
    sh_link: 40,
    sh_info: 44,
    sh_entsize: 56,
    sym_size: 24,
    st_shndx: 6,
};

const LAYOUT32: Layout = Layout {
    ehdr_size: 52,
    e_phoff: 28,
    e_shoff: 32,
    e_phentsize: 42,
    phdr_size: 32,
    p_offset: 4,
    p_filesz: 16,
    shdr_size: 40,
    sh_offset: 16,
    sh_size: 20,
    sh_link: 24,
    sh_info: 28,
    sh_entsize: 36,
    sym_size: 16,
    st_shndx: 14,
};

fn format(msg: impl Into<String>) -> ElfProblem {
    ElfProblem::Format(msg.into())
}

/// "`what` is cut short" for a header read that ran past the end.
fn cut(what: &str, len: usize) -> ElfProblem {
    ElfProblem::Truncated(format!(
        "its {what} lies past the end of the file ({len} bytes)"
    ))
}

/// `offset + size`, or a truncation problem naming `what` if it overflows or ends past
/// the file.
fn within(what: &str, offset: u64, size: u64, len: usize) -> Result<(), ElfProblem> {
    match offset.checked_add(size) {
        Some(end) if end <= len as u64 => Ok(()),
        Some(end) => Err(ElfProblem::Truncated(format!(
            "its {what} ends at byte {end} but the file has only {len} bytes"
        ))),
        None => Err(format(format!("its {what} has an impossible offset/size"))),
    }
}

/// Checks that `data` is a complete ELF shared library for this host whose dynamic
/// symbol table defines `root_symbol`.
pub(crate) fn check(data: &[u8], root_symbol: &str) -> Result<(), ElfProblem> {
    let len = data.len();
    if len == 0 {
        return Err(format("is empty (0 bytes)"));
    }
    if data.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err(format("is not an ELF file (no ELF magic number)"));
    }
    let ident = Reader {
        data,
        little: true,
        wide: true,
    };
    let class = ident.u8(4).ok_or_else(|| cut("ELF identification", len))?;
    let encoding = ident.u8(5).ok_or_else(|| cut("ELF identification", len))?;
    let version = ident.u8(6).ok_or_else(|| cut("ELF identification", len))?;
    let class_name = |c: u8| match c {
        ELFCLASS32 => "32-bit",
        ELFCLASS64 => "64-bit",
        _ => "unknown-class",
    };
    if class != HOST_CLASS {
        return Err(format(format!(
            "is a {} ELF file but this host is {}",
            class_name(class),
            class_name(HOST_CLASS)
        )));
    }
    let data_name = |d: u8| match d {
        ELFDATA2LSB => "little-endian",
        ELFDATA2MSB => "big-endian",
        _ => "unknown-endian",
    };
    if encoding != HOST_DATA {
        return Err(format(format!(
            "is a {} ELF file but this host is {}",
            data_name(encoding),
            data_name(HOST_DATA)
        )));
    }
    if version != EV_CURRENT {
        return Err(format(format!("has unknown ELF version {version}")));
    }
    let r = Reader {
        data,
        little: encoding == ELFDATA2LSB,
        wide: class == ELFCLASS64,
    };
    let l = if r.wide { &LAYOUT64 } else { &LAYOUT32 };
    within("ELF header", 0, l.ehdr_size, len)?;
    // The whole header is inside the file (checked just above), so these reads
    // succeed; they stay checked all the same.
    let header = || cut("ELF header", len);
    let e_type = r.u16(16).ok_or_else(header)?;
    let e_machine = r.u16(18).ok_or_else(header)?;
    match e_type {
        ET_DYN => {}
        ET_EXEC => {
            return Err(format(
                "is an executable (ELF type EXEC), not a shared library",
            ))
        }
        other => {
            return Err(format(format!(
                "is not a shared library (ELF type {other}, expected DYN)"
            )))
        }
    }
    if let Some(host) = host_machine() {
        if e_machine != host {
            return Err(format(format!(
                "is built for {} but this host is {}",
                machine_name(e_machine),
                machine_name(host)
            )));
        }
    }
    let phoff = r.word(l.e_phoff).ok_or_else(header)?;
    let shoff = r.word(l.e_shoff).ok_or_else(header)?;
    let phentsize = r.u16(l.e_phentsize).ok_or_else(header)?;
    let phnum_raw = r.u16(l.e_phentsize + 2).ok_or_else(header)?;
    let shentsize = r.u16(l.e_phentsize + 4).ok_or_else(header)?;
    let shnum_raw = r.u16(l.e_phentsize + 6).ok_or_else(header)?;

    // Section headers: needed for the dynamic symbol table, and section 0 carries the
    // real counts when they overflow 16 bits.
    let sections = if shoff == 0 {
        Sections::none()
    } else {
        if u64::from(shentsize) != l.shdr_size {
            return Err(format(format!(
                "has section headers of {shentsize} bytes, expected {}",
                l.shdr_size
            )));
        }
        within("section header table", shoff, l.shdr_size, len)?;
        let count = if shnum_raw == 0 {
            r.word(shoff + l.sh_size)
                .ok_or_else(|| cut("section header table", len))?
        } else {
            u64::from(shnum_raw)
        };
        let size = count
            .checked_mul(l.shdr_size)
            .ok_or_else(|| format("has an impossible section count"))?;
        within("section header table", shoff, size, len)?;
        Sections {
            offset: shoff,
            count,
        }
    };

    let phnum = if phnum_raw == PN_XNUM {
        if sections.count == 0 {
            return Err(format(
                "has an extended program header count but no sections",
            ));
        }
        u64::from(
            r.u32(sections.offset + l.sh_info)
                .ok_or_else(|| cut("section header table", len))?,
        )
    } else {
        u64::from(phnum_raw)
    };
    if phnum == 0 {
        return Err(format("has no program headers"));
    }
    if u64::from(phentsize) != l.phdr_size {
        return Err(format(format!(
            "has program headers of {phentsize} bytes, expected {}",
            l.phdr_size
        )));
    }
    let table = phnum
        .checked_mul(l.phdr_size)
        .ok_or_else(|| format("has an impossible program header count"))?;
    within("program header table", phoff, table, len)?;

    let mut loads = 0u64;
    let mut dynamic = false;
    for i in 0..phnum {
        let ph = phoff + i * l.phdr_size; // cannot overflow: the table is within the file
        let p_type = r.u32(ph).ok_or_else(|| cut("program header table", len))?;
        let p_offset = r
            .word(ph + l.p_offset)
            .ok_or_else(|| cut("program header table", len))?;
        let p_filesz = r
            .word(ph + l.p_filesz)
            .ok_or_else(|| cut("program header table", len))?;
        if p_type == PT_LOAD {
            loads += 1;
        }
        if p_type == PT_DYNAMIC {
            dynamic = true;
        }
        // Every segment with file contents (loadable ones above all: the dynamic
        // linker maps them, and touching a page past the end of the file is SIGBUS).
        if p_filesz > 0 {
            let what = if p_type == PT_LOAD {
                format!("loadable segment {i}")
            } else {
                format!("segment {i}")
            };
            within(&what, p_offset, p_filesz, len)?;
        }
    }
    if loads == 0 {
        return Err(format("has no loadable segments"));
    }
    if !dynamic {
        return Err(format(
            "has no dynamic section, so it is not a shared library",
        ));
    }

    find_root_symbol(&r, l, &sections, len, root_symbol)
}

struct Sections {
    offset: u64,
    count: u64,
}

impl Sections {
    fn none() -> Sections {
        Sections {
            offset: 0,
            count: 0,
        }
    }
}

/// Looks `root_symbol` up among the defined symbols of the dynamic symbol table(s).
fn find_root_symbol(
    r: &Reader<'_>,
    l: &Layout,
    sections: &Sections,
    len: usize,
    root_symbol: &str,
) -> Result<(), ElfProblem> {
    let table = |what: &str| cut(what, len);
    let mut saw_dynsym = false;
    for i in 0..sections.count {
        let sh = sections.offset + i * l.shdr_size; // within the file, checked above
        let sh_type = r.u32(sh + 4).ok_or_else(|| table("section header table"))?;
        if sh_type != SHT_DYNSYM {
            continue;
        }
        saw_dynsym = true;
        let sym_off = r
            .word(sh + l.sh_offset)
            .ok_or_else(|| table("section header table"))?;
        let sym_size = r
            .word(sh + l.sh_size)
            .ok_or_else(|| table("section header table"))?;
        let entsize = r
            .word(sh + l.sh_entsize)
            .ok_or_else(|| table("section header table"))?;
        let link = r
            .u32(sh + l.sh_link)
            .ok_or_else(|| table("section header table"))?;
        within("dynamic symbol table", sym_off, sym_size, len)?;
        if entsize != l.sym_size {
            return Err(format(format!(
                "has dynamic symbols of {entsize} bytes, expected {}",
                l.sym_size
            )));
        }
        if u64::from(link) >= sections.count {
            return Err(format(
                "has a dynamic symbol table without a valid string table",
            ));
        }
        let str_sh = sections.offset + u64::from(link) * l.shdr_size;
        let str_type = r
            .u32(str_sh + 4)
            .ok_or_else(|| table("section header table"))?;
        let str_off = r
            .word(str_sh + l.sh_offset)
            .ok_or_else(|| table("section header table"))?;
        let str_size = r
            .word(str_sh + l.sh_size)
            .ok_or_else(|| table("section header table"))?;
        if str_type == SHT_NOBITS {
            return Err(format("has a dynamic string table with no contents"));
        }
        within("dynamic string table", str_off, str_size, len)?;
        let strings = r
            .bytes(str_off, str_size)
            .ok_or_else(|| table("dynamic string table"))?;
        let wanted = root_symbol.as_bytes();
        let count = sym_size / l.sym_size;
        for s in 0..count {
            let sym = sym_off + s * l.sym_size; // within the table, checked above
            let name = r.u32(sym).ok_or_else(|| table("dynamic symbol table"))?;
            let shndx = r
                .u16(sym + l.st_shndx)
                .ok_or_else(|| table("dynamic symbol table"))?;
            if shndx == SHN_UNDEF {
                continue; // an import, not an export
            }
            let Some(rest) = usize::try_from(name).ok().and_then(|n| strings.get(n..)) else {
                continue;
            };
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            if &rest[..end] == wanted {
                return Ok(());
            }
        }
    }
    if saw_dynsym {
        Err(ElfProblem::NoRootModule(
            "it does not export the provtarget root module".into(),
        ))
    } else {
        Err(ElfProblem::NoRootModule(
            "it has no dynamic symbol table, so it exports no provtarget root module".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "root_sym";

    /// A minimal 64-bit little-endian ELF shared library for this host with one
    /// PT_LOAD, one PT_DYNAMIC, and a dynsym + dynstr defining `symbol`.
    fn tiny_elf(symbol: &str) -> Vec<u8> {
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = HOST_CLASS;
        f[5] = HOST_DATA;
        f[6] = 1;
        let put16 =
            |f: &mut Vec<u8>, o: usize, v: u16| f[o..o + 2].copy_from_slice(&v.to_le_bytes());
        let put32 =
            |f: &mut Vec<u8>, o: usize, v: u32| f[o..o + 4].copy_from_slice(&v.to_le_bytes());
        let put64 =
            |f: &mut Vec<u8>, o: usize, v: u64| f[o..o + 8].copy_from_slice(&v.to_le_bytes());
        put16(&mut f, 16, ET_DYN);
        put16(&mut f, 18, host_machine().unwrap_or(62));
        // program headers at 64: two entries
        put64(&mut f, 32, 64);
        put16(&mut f, 54, 56);
        put16(&mut f, 56, 2);
        f.resize(64 + 2 * 56, 0);
        // PT_LOAD covering the whole file so far (fixed up below), PT_DYNAMIC empty
        put32(&mut f, 64, PT_LOAD);
        put32(&mut f, 64 + 56, PT_DYNAMIC);
        // dynstr
        let dynstr_off = f.len();
        let mut strtab = vec![0u8];
        strtab.extend_from_slice(symbol.as_bytes());
        strtab.push(0);
        f.extend_from_slice(&strtab);
        // dynsym: null symbol + one defined symbol
        let dynsym_off = f.len();
        f.resize(dynsym_off + 48, 0);
        put32(&mut f, dynsym_off + 24, 1);
        put16(&mut f, dynsym_off + 24 + 6, 5);
        // section headers: null, dynsym, dynstr
        let shoff = f.len();
        f.resize(shoff + 3 * 64, 0);
        let s1 = shoff + 64;
        put32(&mut f, s1 + 4, SHT_DYNSYM);
        put64(&mut f, s1 + 24, dynsym_off as u64);
        put64(&mut f, s1 + 32, 48);
        put32(&mut f, s1 + 40, 2);
        put64(&mut f, s1 + 56, 24);
        let s2 = shoff + 128;
        put32(&mut f, s2 + 4, 3);
        put64(&mut f, s2 + 24, dynstr_off as u64);
        put64(&mut f, s2 + 32, strtab.len() as u64);
        put64(&mut f, 40, shoff as u64);
        put16(&mut f, 58, 64);
        put16(&mut f, 60, 3);
        let total = f.len() as u64;
        put64(&mut f, 64 + 32, total); // PT_LOAD p_filesz
        f
    }

    #[test]
    fn accepts_a_minimal_library_defining_the_symbol() {
        assert_eq!(check(&tiny_elf(ROOT), ROOT), Ok(()));
    }

    #[test]
    fn refuses_a_library_without_the_symbol() {
        assert!(matches!(
            check(&tiny_elf("other_sym"), ROOT),
            Err(ElfProblem::NoRootModule(_))
        ));
        // A prefix of the wanted name is not the name.
        assert!(matches!(
            check(&tiny_elf("root_sy"), ROOT),
            Err(ElfProblem::NoRootModule(_))
        ));
    }

    #[test]
    fn refuses_an_undefined_import_of_the_symbol() {
        let mut f = tiny_elf(ROOT);
        let shoff = u64::from_le_bytes(f[40..48].try_into().unwrap()) as usize;
        let dynsym = u64::from_le_bytes(f[shoff + 64 + 24..shoff + 64 + 32].try_into().unwrap());
        let shndx = dynsym as usize + 24 + 6;
        f[shndx..shndx + 2].copy_from_slice(&0u16.to_le_bytes());
        assert!(matches!(check(&f, ROOT), Err(ElfProblem::NoRootModule(_))));
    }

    #[test]
    fn refuses_wrong_class_machine_and_type() {
        let mut f = tiny_elf(ROOT);
        f[4] = if HOST_CLASS == ELFCLASS64 {
            ELFCLASS32
        } else {
            ELFCLASS64
        };
        assert!(
            matches!(check(&f, ROOT), Err(ElfProblem::Format(m)) if m.contains("32-bit") || m.contains("64-bit"))
        );

        let mut f = tiny_elf(ROOT);
        f[18..20].copy_from_slice(&999u16.to_le_bytes());
        assert!(
            matches!(check(&f, ROOT), Err(ElfProblem::Format(m)) if m.contains("ELF machine 999"))
        );

        let mut f = tiny_elf(ROOT);
        f[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        assert!(matches!(check(&f, ROOT), Err(ElfProblem::Format(m)) if m.contains("executable")));
    }

    #[test]
    fn refuses_every_truncation_without_panicking() {
        let f = tiny_elf(ROOT);
        for cut_at in 0..f.len() {
            assert!(check(&f[..cut_at], ROOT).is_err(), "cut at {cut_at}");
        }
    }

    #[test]
    fn survives_absurd_offsets_and_counts() {
        let base = tiny_elf(ROOT);
        // Overwrite every 8-byte-aligned word of the headers with extreme values.
        for pos in (16..base.len() - 8).step_by(2) {
            for value in [u64::MAX, u64::MAX / 2, 0x8000_0000, 0] {
                let mut f = base.clone();
                f[pos..pos + 8].copy_from_slice(&value.to_le_bytes());
                let _ = check(&f, ROOT);
            }
        }
    }

    #[test]
    fn segment_past_the_end_is_truncation() {
        let mut f = tiny_elf(ROOT);
        let total = f.len() as u64 + 1;
        f[64 + 32..64 + 40].copy_from_slice(&total.to_le_bytes());
        assert!(
            matches!(check(&f, ROOT), Err(ElfProblem::Truncated(m)) if m.contains("loadable segment 0"))
        );
    }

    #[test]
    fn real_libraries_are_judged_without_loading_them() {
        use provtarget_testsupport::cdylib;
        let root = provtarget_abi::ROOT_SYMBOL;
        let plugin = std::fs::read(cdylib("provtarget-testkit")).unwrap();
        assert_eq!(check(&plugin, root), Ok(()));
        let noroot = std::fs::read(cdylib("provtarget-test-noroot")).unwrap();
        assert!(matches!(
            check(&noroot, root),
            Err(ElfProblem::NoRootModule(_))
        ));
        // Any proper prefix of a real plugin is refused (64 cuts spread over the file,
        // plus the last bytes, where the section header table sits).
        let len = plugin.len();
        let cuts = (0..64).map(|i| i * (len / 64)).chain(len - 64..len);
        for cut_at in cuts {
            assert!(check(&plugin[..cut_at], root).is_err(), "cut at {cut_at}");
        }
    }
}

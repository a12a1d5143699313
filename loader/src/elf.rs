//! ELF pre-check: decides from the bytes already read (never by running anything)
//! whether a file is a complete shared library for this host that exports the
//! provtarget root module and was not built with `panic = "abort"`.
//!
//! Why before `dlopen`: the dynamic linker runs a library's initialisers before any of
//! our checks can look at its exports, and it maps segments straight from the file, so
//! a truncated copy of a real plugin kills the process with SIGBUS inside `dlopen`
//! (see ARCHITECTURE.md §3).
//!
//! The `object` crate reads the structures (identification, file header, program and
//! section headers, the dynamic symbol table), bounds-checked. What stays here is the
//! policy: which values this host accepts, and that every table and segment lies
//! inside the file, compared against its length *before* the structure is read, so a
//! partial copy is reported as truncated rather than as malformed.
#![forbid(unsafe_code)]
// Offsets and sizes are `u64` in ELF64 but `u32` in ELF32: the `.into()`s that are
// no-ops on a 64-bit host are what makes this file build for a 32-bit one.
#![allow(clippy::useless_conversion)]

use std::mem::size_of;

use object::{
    elf,
    read::elf::{Dyn, FileHeader, ProgramHeader, SectionHeader, SectionTable, Sym},
    Endianness, ReadRef, StringTable,
};

use crate::RefusalKind;

/// Why a file is not a loadable provtarget plugin library. `what` says what is wrong,
/// without the path or the fix (the caller adds both, by kind).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ElfProblem {
    pub(crate) kind: RefusalKind,
    pub(crate) what: String,
}

fn problem(kind: RefusalKind, what: impl Into<String>) -> ElfProblem {
    ElfProblem {
        kind,
        what: what.into(),
    }
}

/// The ELF file header of this host's class: the only one accepted.
#[cfg(target_pointer_width = "64")]
type HostHeader = elf::FileHeader64<Endianness>;
/// The ELF file header of this host's class: the only one accepted.
#[cfg(target_pointer_width = "32")]
type HostHeader = elf::FileHeader32<Endianness>;

/// The ELF class of this host.
const HOST_CLASS: u8 = if cfg!(target_pointer_width = "64") {
    elf::ELFCLASS64
} else {
    elf::ELFCLASS32
};

/// The ELF data encoding of this host.
const HOST_DATA: u8 = if cfg!(target_endian = "little") {
    elf::ELFDATA2LSB
} else {
    elf::ELFDATA2MSB
};

/// `e_machine` values of the architectures we know, with their names.
const MACHINES: &[(u16, &str)] = &[
    (elf::EM_386, "x86"),
    (elf::EM_MIPS, "mips"),
    (elf::EM_PPC, "powerpc"),
    (elf::EM_PPC64, "powerpc64"),
    (elf::EM_S390, "s390x"),
    (elf::EM_ARM, "arm"),
    (elf::EM_X86_64, "x86_64"),
    (elf::EM_AARCH64, "aarch64"),
    (elf::EM_RISCV, "riscv64"),
    (elf::EM_LOONGARCH, "loongarch64"),
];

/// This host's `e_machine`, when we know it. For an architecture missing from
/// [`MACHINES`] the machine check is left to the dynamic linker.
fn host_machine() -> Option<u16> {
    let arch = match std::env::consts::ARCH {
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

fn class_name(class: u8) -> &'static str {
    match class {
        elf::ELFCLASS32 => "32-bit",
        elf::ELFCLASS64 => "64-bit",
        _ => "unknown-class",
    }
}

fn data_name(data: u8) -> &'static str {
    match data {
        elf::ELFDATA2LSB => "little-endian",
        elf::ELFDATA2MSB => "big-endian",
        _ => "unknown-endian",
    }
}

/// `Ok` when `offset + size` bytes fit in a file of `len` bytes; else truncation
/// naming `what` (or malformed, if the sum overflows).
fn within(what: &str, offset: u64, size: u64, len: u64) -> Result<(), ElfProblem> {
    match offset.checked_add(size) {
        Some(end) if end <= len => Ok(()),
        Some(end) => Err(problem(
            RefusalKind::Truncated,
            format!("its {what} ends at byte {end} but the file has only {len} bytes"),
        )),
        None => Err(problem(
            RefusalKind::Malformed,
            format!("its {what} has an impossible offset/size"),
        )),
    }
}

/// `count * size`, or malformed naming `what`.
fn times(count: u64, size: usize, what: &str) -> Result<u64, ElfProblem> {
    count
        .checked_mul(size as u64)
        .ok_or_else(|| problem(RefusalKind::Malformed, format!("has an impossible {what}")))
}

/// Offsets in `e_ident` (ELF specification).
const EI_CLASS: usize = 4;
const EI_DATA: usize = 5;
const EI_VERSION: usize = 6;

/// The fields of `e_ident` that decide whether the header can be read at all.
struct Ident {
    class: u8,
    data: u8,
    version: u8,
}

/// What the dynamic symbol table says about the file.
#[derive(Debug, Default, PartialEq, Eq)]
struct Exports {
    root: bool,
    panic_abort: bool,
}

/// Checks that `data` (`len` bytes) is a complete ELF shared library for this host
/// whose dynamic symbol table defines `root_symbol` and does not define
/// `panic_abort_symbol`.
pub(crate) fn check<'data, R: ReadRef<'data>>(
    data: R,
    len: u64,
    root_symbol: &str,
    panic_abort_symbol: &str,
) -> Result<(), ElfProblem> {
    check_ident(data, len)?;
    within("ELF header", 0, size_of::<HostHeader>() as u64, len)?;
    let header = HostHeader::parse(data).map_err(|e| {
        problem(
            RefusalKind::Malformed,
            format!("has a bad ELF header ({e})"),
        )
    })?;
    let endian = header.endian().map_err(|e| {
        problem(
            RefusalKind::Malformed,
            format!("has a bad ELF header ({e})"),
        )
    })?;
    check_header(header, endian, data, len)?;
    let exports = exports(header, endian, data, len, root_symbol, panic_abort_symbol)?;
    if exports.panic_abort {
        // Checked before the root symbol: a panic = "abort" plugin exports both.
        return Err(problem(
            RefusalKind::PanicAbortBuild,
            "was built with panic = \"abort\"",
        ));
    }
    if !exports.root {
        return Err(problem(
            RefusalKind::NoRootSymbol,
            "it does not export the provtarget root module",
        ));
    }
    Ok(())
}

/// The ELF magic number and identification: class, byte order and version of this
/// host.
fn check_ident<'data, R: ReadRef<'data>>(data: R, len: u64) -> Result<(), ElfProblem> {
    if len == 0 {
        return Err(problem(RefusalKind::NotElf, "is empty (0 bytes)"));
    }
    let ident_size = size_of::<elf::Ident>() as u64;
    if len < 4 || data.read_bytes_at(0, 4).ok() != Some(&elf::ELFMAG[..]) {
        return Err(problem(
            RefusalKind::NotElf,
            "is not an ELF file (no ELF magic number)",
        ));
    }
    within("ELF identification", 0, ident_size, len)?;
    // `elf::Ident` is not `Pod`, and the file header to read it from depends on the
    // class it gives: read its bytes, at the offsets the ELF specification fixes.
    let ident = data.read_bytes_at(0, ident_size).map_err(|_| {
        problem(
            RefusalKind::Truncated,
            "its ELF identification is unreadable",
        )
    })?;
    let ident = Ident {
        class: ident[EI_CLASS],
        data: ident[EI_DATA],
        version: ident[EI_VERSION],
    };
    if ident.class != HOST_CLASS {
        return Err(problem(
            RefusalKind::WrongClass,
            format!(
                "is a {} ELF file but this host is {}",
                class_name(ident.class),
                class_name(HOST_CLASS)
            ),
        ));
    }
    if ident.data != HOST_DATA {
        return Err(problem(
            RefusalKind::WrongClass,
            format!(
                "is a {} ELF file but this host is {}",
                data_name(ident.data),
                data_name(HOST_DATA)
            ),
        ));
    }
    if ident.version != elf::EV_CURRENT {
        return Err(problem(
            RefusalKind::Malformed,
            format!("has unknown ELF version {}", ident.version),
        ));
    }
    Ok(())
}

/// Type and machine, then the tables and segments (see [`check_segments`]).
fn check_header<'data, R: ReadRef<'data>>(
    header: &HostHeader,
    endian: Endianness,
    data: R,
    len: u64,
) -> Result<(), ElfProblem> {
    match header.e_type(endian) {
        elf::ET_DYN => {}
        elf::ET_EXEC => {
            return Err(problem(
                RefusalKind::NotASharedLibrary,
                "is an executable (ELF type EXEC), not a shared library",
            ))
        }
        other => {
            return Err(problem(
                RefusalKind::NotASharedLibrary,
                format!("is not a shared library (ELF type {other}, expected DYN)"),
            ))
        }
    }
    let machine = header.e_machine(endian);
    if let Some(host) = host_machine() {
        if machine != host {
            return Err(problem(
                RefusalKind::WrongMachine,
                format!(
                    "is built for {} but this host is {}",
                    machine_name(machine),
                    machine_name(host)
                ),
            ));
        }
    }

    check_segments(header, endian, data, len)
}

/// The program header table and every segment with file contents lie inside the
/// file; there is a loadable segment and a dynamic one.
fn check_segments<'data, R: ReadRef<'data>>(
    header: &HostHeader,
    endian: Endianness,
    data: R,
    len: u64,
) -> Result<(), ElfProblem> {
    // Section 0 carries the real program header count when it overflows 16 bits, so
    // the section header table is checked first.
    check_section_table(header, endian, data, len)?;
    let phnum = header.phnum(endian, data).map_err(|_| {
        problem(
            RefusalKind::Malformed,
            "has an extended program header count but no sections",
        )
    })? as u64;
    if phnum == 0 {
        return Err(problem(RefusalKind::Malformed, "has no program headers"));
    }
    let phentsize = header.e_phentsize(endian);
    let phdr_size = size_of::<<HostHeader as FileHeader>::ProgramHeader>();
    if usize::from(phentsize) != phdr_size {
        return Err(problem(
            RefusalKind::Malformed,
            format!("has program headers of {phentsize} bytes, expected {phdr_size}"),
        ));
    }
    let phoff: u64 = header.e_phoff(endian).into();
    let table = times(phnum, phdr_size, "program header count")?;
    within("program header table", phoff, table, len)?;
    let segments = header.program_headers(endian, data).map_err(|e| {
        problem(
            RefusalKind::Malformed,
            format!("has unreadable program headers ({e})"),
        )
    })?;

    let (mut loads, mut dynamic) = (0u64, false);
    for (i, segment) in segments.iter().enumerate() {
        let p_type = segment.p_type(endian);
        loads += u64::from(p_type == elf::PT_LOAD);
        dynamic |= p_type == elf::PT_DYNAMIC;
        // Every segment with file contents (loadable ones above all: the dynamic
        // linker maps them, and touching a page past the end of the file is SIGBUS).
        let filesz: u64 = segment.p_filesz(endian).into();
        if filesz > 0 {
            let what = if p_type == elf::PT_LOAD {
                format!("loadable segment {i}")
            } else {
                format!("segment {i}")
            };
            within(&what, segment.p_offset(endian).into(), filesz, len)?;
        }
    }
    if loads == 0 {
        return Err(problem(
            RefusalKind::NotASharedLibrary,
            "has no loadable segments",
        ));
    }
    if !dynamic {
        return Err(problem(
            RefusalKind::NotASharedLibrary,
            "has no dynamic section, so it is not a shared library",
        ));
    }
    Ok(())
}

/// The section header table, when there is one, lies inside the file.
fn check_section_table<'data, R: ReadRef<'data>>(
    header: &HostHeader,
    endian: Endianness,
    data: R,
    len: u64,
) -> Result<(), ElfProblem> {
    let shoff: u64 = header.e_shoff(endian).into();
    if shoff == 0 {
        return Ok(());
    }
    let shdr_size = size_of::<<HostHeader as FileHeader>::SectionHeader>();
    let shentsize = header.e_shentsize(endian);
    if usize::from(shentsize) != shdr_size {
        return Err(problem(
            RefusalKind::Malformed,
            format!("has section headers of {shentsize} bytes, expected {shdr_size}"),
        ));
    }
    // Section 0 first: it holds the count when `e_shnum` overflows.
    within("section header table", shoff, shdr_size as u64, len)?;
    let count = header.shnum(endian, data).map_err(|e| {
        problem(
            RefusalKind::Malformed,
            format!("has an unreadable section count ({e})"),
        )
    })? as u64;
    let size = times(count, shdr_size, "section count")?;
    within("section header table", shoff, size, len)
}

/// Looks the root and panic-abort symbols up among the defined symbols of the dynamic
/// symbol table.
fn exports<'data, R: ReadRef<'data>>(
    header: &HostHeader,
    endian: Endianness,
    data: R,
    len: u64,
    root_symbol: &str,
    panic_abort_symbol: &str,
) -> Result<Exports, ElfProblem> {
    let malformed = |e: object::read::Error| {
        problem(
            RefusalKind::Malformed,
            format!("has a malformed dynamic symbol table ({e})"),
        )
    };
    // Section names are not needed: an empty string table stands in for them, so a
    // damaged `.shstrtab` does not matter here (nor to the dynamic linker).
    let headers = header.section_headers(endian, data).map_err(malformed)?;
    let sections = SectionTable::<HostHeader, R>::new(headers, StringTable::default());
    let Some(dynsym) = headers
        .iter()
        .find(|s| s.sh_type(endian) == elf::SHT_DYNSYM)
    else {
        return Err(problem(
            RefusalKind::NoRootSymbol,
            "it has no dynamic symbol table, so it exports no provtarget root module",
        ));
    };
    // Extents first, so a cut-off table reads as truncation.
    let sym_size = size_of::<<HostHeader as FileHeader>::Sym>() as u64;
    within(
        "dynamic symbol table",
        dynsym.sh_offset(endian).into(),
        dynsym.sh_size(endian).into(),
        len,
    )?;
    let entsize: u64 = dynsym.sh_entsize(endian).into();
    if entsize != sym_size {
        return Err(problem(
            RefusalKind::Malformed,
            format!("has dynamic symbols of {entsize} bytes, expected {sym_size}"),
        ));
    }
    let strtab = headers
        .get(dynsym.sh_link(endian) as usize)
        .ok_or_else(|| {
            problem(
                RefusalKind::Malformed,
                "has a dynamic symbol table without a valid string table",
            )
        })?;
    if strtab.sh_type(endian) == elf::SHT_NOBITS {
        return Err(problem(
            RefusalKind::Malformed,
            "has a dynamic string table with no contents",
        ));
    }
    within(
        "dynamic string table",
        strtab.sh_offset(endian).into(),
        strtab.sh_size(endian).into(),
        len,
    )?;

    let symbols = sections
        .symbols(endian, data, elf::SHT_DYNSYM)
        .map_err(malformed)?;
    let strings = symbols.strings();
    let mut found = Exports::default();
    for symbol in symbols.iter() {
        if symbol.st_shndx(endian) == elf::SHN_UNDEF {
            continue; // an import, not an export
        }
        let Ok(name) = symbol.name(endian, strings) else {
            continue;
        };
        found.root |= name == root_symbol.as_bytes();
        found.panic_abort |= name == panic_abort_symbol.as_bytes();
    }
    Ok(found)
}

/// What a library needs from other objects, read from its dynamic section and dynamic
/// symbol table: the facts that tell why the dynamic linker refused it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Imports {
    /// Its `DT_NEEDED` libraries, in order.
    pub(crate) needed: Vec<String>,
    /// Its library search path: `DT_RUNPATH`, else `DT_RPATH` (`:`-separated lists,
    /// split).
    pub(crate) search_path: Vec<String>,
    /// The symbols it imports and must find (undefined and not weak), in table order.
    pub(crate) symbols: Vec<String>,
}

/// Reads the [`Imports`] of a library that passed [`check`] (`None` if its tables
/// cannot be read after all).
pub(crate) fn imports<'data, R: ReadRef<'data>>(data: R) -> Option<Imports> {
    let header = HostHeader::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let headers = header.section_headers(endian, data).ok()?;
    let sections = SectionTable::<HostHeader, R>::new(headers, StringTable::default());
    let mut imports = Imports::default();
    if let Some((entries, link)) = sections.dynamic(endian, data).ok()? {
        let strings = sections.strings(endian, data, link).ok()?;
        let (mut runpath, mut rpath) = (Vec::new(), Vec::new());
        for entry in entries {
            let Some(text) = entry.val32(endian).and_then(|v| strings.get(v).ok()) else {
                continue;
            };
            let text = String::from_utf8_lossy(text).into_owned();
            match entry.tag32(endian) {
                Some(elf::DT_NEEDED) => imports.needed.push(text),
                Some(elf::DT_RUNPATH) => runpath.extend(text.split(':').map(str::to_string)),
                Some(elf::DT_RPATH) => rpath.extend(text.split(':').map(str::to_string)),
                _ => {}
            }
        }
        // The dynamic linker ignores DT_RPATH when DT_RUNPATH is present.
        imports.search_path = if runpath.is_empty() { rpath } else { runpath };
    }
    let symbols = sections.symbols(endian, data, elf::SHT_DYNSYM).ok()?;
    for symbol in symbols.iter() {
        if symbol.st_shndx(endian) != elf::SHN_UNDEF || symbol.st_bind() != elf::STB_GLOBAL {
            continue; // defined here, or weak (may stay unresolved), or the null entry
        }
        match symbol.name(endian, symbols.strings()) {
            Ok(name) if !name.is_empty() => imports
                .symbols
                .push(String::from_utf8_lossy(name).into_owned()),
            _ => {}
        }
    }
    Some(imports)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "root_sym";
    const ABORT: &str = "abort_sym";

    fn run(data: &[u8]) -> Result<(), ElfProblem> {
        check(data, data.len() as u64, ROOT, ABORT)
    }

    fn kind(data: &[u8]) -> Option<RefusalKind> {
        run(data).err().map(|p| p.kind)
    }

    /// A minimal 64-bit little-endian ELF shared library for this host with one
    /// PT_LOAD, one PT_DYNAMIC, and a dynsym + dynstr defining `symbols`.
    fn tiny_elf(symbols: &[&str]) -> Vec<u8> {
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
        put16(&mut f, 16, elf::ET_DYN);
        put16(&mut f, 18, host_machine().unwrap_or(62));
        // program headers at 64: two entries
        put64(&mut f, 32, 64);
        put16(&mut f, 54, 56);
        put16(&mut f, 56, 2);
        f.resize(64 + 2 * 56, 0);
        // PT_LOAD covering the whole file (fixed up below), PT_DYNAMIC empty
        put32(&mut f, 64, elf::PT_LOAD);
        put32(&mut f, 64 + 56, elf::PT_DYNAMIC);
        // dynstr
        let dynstr_off = f.len();
        let mut strtab = vec![0u8];
        let mut names = Vec::new();
        for s in symbols {
            names.push(strtab.len() as u32);
            strtab.extend_from_slice(s.as_bytes());
            strtab.push(0);
        }
        f.extend_from_slice(&strtab);
        f.resize(f.len().next_multiple_of(8), 0);
        // dynsym: null symbol + one defined symbol per name
        let dynsym_off = f.len();
        let dynsym_size = 24 * (1 + symbols.len());
        f.resize(dynsym_off + dynsym_size, 0);
        for (i, name) in names.iter().enumerate() {
            let sym = dynsym_off + 24 * (i + 1);
            put32(&mut f, sym, *name);
            put16(&mut f, sym + 6, 5);
        }
        // section headers: null, dynsym, dynstr
        let shoff = f.len();
        f.resize(shoff + 3 * 64, 0);
        let s1 = shoff + 64;
        put32(&mut f, s1 + 4, elf::SHT_DYNSYM);
        put64(&mut f, s1 + 24, dynsym_off as u64);
        put64(&mut f, s1 + 32, dynsym_size as u64);
        put32(&mut f, s1 + 40, 2);
        put64(&mut f, s1 + 56, 24);
        let s2 = shoff + 128;
        put32(&mut f, s2 + 4, elf::SHT_STRTAB);
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
        assert_eq!(run(&tiny_elf(&[ROOT])), Ok(()));
        assert_eq!(run(&tiny_elf(&["other", ROOT])), Ok(()));
    }

    #[test]
    fn refuses_a_library_without_the_symbol() {
        assert_eq!(
            kind(&tiny_elf(&["other_sym"])),
            Some(RefusalKind::NoRootSymbol)
        );
        // A prefix of the wanted name is not the name.
        assert_eq!(
            kind(&tiny_elf(&["root_sy"])),
            Some(RefusalKind::NoRootSymbol)
        );
    }

    #[test]
    fn refuses_a_panic_abort_build_even_with_the_root_symbol() {
        let problem = run(&tiny_elf(&[ROOT, ABORT])).unwrap_err();
        assert_eq!(problem.kind, RefusalKind::PanicAbortBuild);
        assert_eq!(
            kind(&tiny_elf(&[ABORT])),
            Some(RefusalKind::PanicAbortBuild)
        );
    }

    #[test]
    fn refuses_an_undefined_import_of_the_symbol() {
        let mut f = tiny_elf(&[ROOT]);
        let shoff = u64::from_le_bytes(f[40..48].try_into().unwrap()) as usize;
        let dynsym = u64::from_le_bytes(f[shoff + 64 + 24..shoff + 64 + 32].try_into().unwrap());
        let shndx = dynsym as usize + 24 + 6;
        f[shndx..shndx + 2].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(kind(&f), Some(RefusalKind::NoRootSymbol));
    }

    #[test]
    fn refuses_wrong_class_machine_and_type() {
        let mut f = tiny_elf(&[ROOT]);
        f[4] = if HOST_CLASS == elf::ELFCLASS64 {
            elf::ELFCLASS32
        } else {
            elf::ELFCLASS64
        };
        let p = run(&f).unwrap_err();
        assert_eq!(p.kind, RefusalKind::WrongClass);
        assert!(p.what.contains("32-bit") || p.what.contains("64-bit"));

        let mut f = tiny_elf(&[ROOT]);
        f[18..20].copy_from_slice(&999u16.to_le_bytes());
        let p = run(&f).unwrap_err();
        assert_eq!(p.kind, RefusalKind::WrongMachine);
        assert!(p.what.contains("ELF machine 999"), "{p:?}");

        let mut f = tiny_elf(&[ROOT]);
        f[16..18].copy_from_slice(&elf::ET_EXEC.to_le_bytes());
        let p = run(&f).unwrap_err();
        assert_eq!(p.kind, RefusalKind::NotASharedLibrary);
        assert!(p.what.contains("executable"));

        assert_eq!(kind(b""), Some(RefusalKind::NotElf));
        assert_eq!(kind(b"not a library"), Some(RefusalKind::NotElf));
    }

    #[test]
    fn refuses_every_truncation_without_panicking() {
        let f = tiny_elf(&[ROOT]);
        for cut_at in 0..f.len() {
            assert!(run(&f[..cut_at]).is_err(), "cut at {cut_at}");
        }
    }

    #[test]
    fn survives_absurd_offsets_and_counts() {
        let base = tiny_elf(&[ROOT]);
        // Overwrite every 2-byte-aligned word of the file with extreme values.
        for pos in (16..base.len() - 8).step_by(2) {
            for value in [u64::MAX, u64::MAX / 2, 0x8000_0000, 0] {
                let mut f = base.clone();
                f[pos..pos + 8].copy_from_slice(&value.to_le_bytes());
                let _ = run(&f);
            }
        }
    }

    #[test]
    fn segment_past_the_end_is_truncation() {
        let mut f = tiny_elf(&[ROOT]);
        let total = f.len() as u64 + 1;
        f[64 + 32..64 + 40].copy_from_slice(&total.to_le_bytes());
        let p = run(&f).unwrap_err();
        assert_eq!(p.kind, RefusalKind::Truncated);
        assert!(p.what.contains("loadable segment 0"), "{p:?}");
    }

    #[test]
    fn imports_list_needed_libraries_and_strong_undefined_symbols_only() {
        let plugin = std::fs::read(provtarget_testsupport::cdylib("provtarget-testkit")).unwrap();
        let found = imports(plugin.as_slice()).expect("readable tables");
        assert!(
            found.needed.iter().any(|n| n.starts_with("libc.so")),
            "{found:?}"
        );
        assert!(found.symbols.iter().any(|s| s == "memcpy"), "{found:?}");
        // Weak imports may stay unresolved; defined symbols are exports, not imports.
        for absent in [
            "__cxa_finalize",
            "__gmon_start__",
            provtarget_abi::ROOT_SYMBOL,
            "",
        ] {
            assert!(
                !found.symbols.iter().any(|s| s == absent),
                "{absent}: {found:?}"
            );
        }
        // Tables that are not ELF give nothing rather than a panic.
        assert_eq!(imports(&b"not a library"[..]), None);
    }

    #[test]
    fn real_libraries_are_judged_without_loading_them() {
        use provtarget_testsupport::cdylib;
        let (root, abort) = (
            provtarget_abi::ROOT_SYMBOL,
            provtarget_abi::PANIC_ABORT_SYMBOL,
        );
        let plugin = std::fs::read(cdylib("provtarget-testkit")).unwrap();
        let len = plugin.len() as u64;
        assert_eq!(check(plugin.as_slice(), len, root, abort), Ok(()));
        let noroot = std::fs::read(cdylib("provtarget-test-noroot")).unwrap();
        let p = check(noroot.as_slice(), noroot.len() as u64, root, abort).unwrap_err();
        assert_eq!(p.kind, RefusalKind::NoRootSymbol);
        // The same through a read cache over a file, as the loader reads a sealed copy.
        let file = std::fs::File::open(cdylib("provtarget-testkit")).unwrap();
        let cache = object::ReadCache::new(&file);
        assert_eq!(check(&cache, len, root, abort), Ok(()));
        // Any proper prefix of a real plugin is refused (64 cuts spread over the file,
        // plus the last bytes, where the section header table sits).
        let len = plugin.len();
        let cuts = (0..64).map(|i| i * (len / 64)).chain(len - 64..len);
        for cut_at in cuts {
            let cut = &plugin[..cut_at];
            assert!(
                check(cut, cut.len() as u64, root, abort).is_err(),
                "cut at {cut_at}"
            );
        }
    }
}

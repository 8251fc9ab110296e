//! Checks an uncompressed ELF vmlinux before it is loaded: 64-bit little-endian x86_64,
//! an executable, and every loadable segment inside the file. The loader itself
//! (linux-loader) would fail on a short file too, but without saying which part is
//! missing.

use super::KernelError;

const EM_X86_64: u16 = 62;
const ET_EXEC: u16 = 2;
const PT_LOAD: u32 = 1;
const PHDR_SIZE: usize = 56;

/// What granule needs from an ELF kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ElfInfo {
    /// Physical entry point (startup_64 for a vmlinux).
    pub entry: u64,
    /// Lowest and highest guest-physical byte the loadable segments occupy.
    pub load_start: u64,
    pub load_end: u64,
}

/// True when `image` starts with the ELF magic.
pub fn is_elf(image: &[u8]) -> bool {
    image.starts_with(b"\x7fELF")
}

fn read<const N: usize>(b: &[u8], at: usize, what: &str) -> Result<[u8; N], KernelError> {
    at.checked_add(N)
        .and_then(|end| b.get(at..end))
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| {
            KernelError::Elf(format!(
                "truncated: {what} at byte {at} is past the {} bytes read of the file",
                b.len()
            ))
        })
}

fn u16_at(b: &[u8], at: usize, what: &str) -> Result<u16, KernelError> {
    read::<2>(b, at, what).map(u16::from_le_bytes)
}

fn u32_at(b: &[u8], at: usize, what: &str) -> Result<u32, KernelError> {
    read::<4>(b, at, what).map(u32::from_le_bytes)
}

fn u64_at(b: &[u8], at: usize, what: &str) -> Result<u64, KernelError> {
    read::<8>(b, at, what).map(u64::from_le_bytes)
}

/// Parses and checks an ELF kernel from its first bytes (`head`, which must hold the
/// ELF and program headers) and the file's length.
pub fn parse(head: &[u8], file_len: u64) -> Result<ElfInfo, KernelError> {
    let image = head;
    if !is_elf(image) {
        return Err(KernelError::Unknown {
            len: file_len as usize,
        });
    }
    let ident = read::<16>(image, 0, "the ELF identification")?;
    if ident[4] != 2 || ident[5] != 1 {
        return Err(KernelError::Elf(
            "not a 64-bit little-endian ELF file".into(),
        ));
    }
    let machine = u16_at(image, 18, "e_machine")?;
    if machine != EM_X86_64 {
        return Err(KernelError::Elf(format!(
            "built for machine {machine}, not x86_64 ({EM_X86_64})"
        )));
    }
    let kind = u16_at(image, 16, "e_type")?;
    if kind != ET_EXEC {
        return Err(KernelError::Elf(format!(
            "type {kind} is not an executable (ET_EXEC)"
        )));
    }
    let entry = u64_at(image, 24, "e_entry")?;
    let phoff = u64_at(image, 32, "e_phoff")?;
    let phentsize = usize::from(u16_at(image, 54, "e_phentsize")?);
    let phnum = usize::from(u16_at(image, 56, "e_phnum")?);
    if phentsize != PHDR_SIZE {
        return Err(KernelError::Elf(format!(
            "program header size {phentsize}, expected {PHDR_SIZE}"
        )));
    }
    let mut load_start = u64::MAX;
    let mut load_end = 0u64;
    for i in 0..phnum {
        let at = usize::try_from(phoff)
            .ok()
            .and_then(|p| p.checked_add(i * PHDR_SIZE))
            .ok_or_else(|| KernelError::Elf(format!("program header {i} offset overflows")))?;
        let what = format!("program header {i}");
        if u32_at(image, at, &what)? != PT_LOAD {
            continue;
        }
        let offset = u64_at(image, at + 8, &what)?;
        let paddr = u64_at(image, at + 24, &what)?;
        let filesz = u64_at(image, at + 32, &what)?;
        let memsz = u64_at(image, at + 40, &what)?;
        let file_end = offset.checked_add(filesz);
        if file_end.is_none_or(|e| e > file_len) {
            return Err(KernelError::Elf(format!(
                "truncated: segment {i} needs file bytes {offset:#x}+{filesz:#x}, the file has {file_len:#x}"
            )));
        }
        let end = paddr
            .checked_add(memsz)
            .ok_or_else(|| KernelError::Elf(format!("segment {i} wraps around")))?;
        load_start = load_start.min(paddr);
        load_end = load_end.max(end);
    }
    if load_end == 0 {
        return Err(KernelError::Elf("no loadable segment".into()));
    }
    if entry < load_start || entry >= load_end {
        return Err(KernelError::Elf(format!(
            "entry {entry:#x} lies outside the loaded segments {load_start:#x}..{load_end:#x}"
        )));
    }
    Ok(ElfInfo {
        entry,
        load_start,
        load_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ELF with one PT_LOAD segment of `size` bytes at physical 16 MiB.
    fn fake_elf(size: u64) -> Vec<u8> {
        let mut b = vec![0u8; 64 + PHDR_SIZE + size as usize];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        b[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[24..32].copy_from_slice(&0x100_0000u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        b[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        b[ph + 8..ph + 16].copy_from_slice(&((64 + PHDR_SIZE) as u64).to_le_bytes());
        b[ph + 24..ph + 32].copy_from_slice(&0x100_0000u64.to_le_bytes());
        b[ph + 32..ph + 40].copy_from_slice(&size.to_le_bytes());
        b[ph + 40..ph + 48].copy_from_slice(&(size * 2).to_le_bytes());
        b
    }

    #[test]
    fn a_good_elf_parses() {
        let img = fake_elf(4096);
        let info = parse(&img, img.len() as u64).unwrap();
        assert_eq!(info.entry, 0x100_0000);
        assert_eq!((info.load_start, info.load_end), (0x100_0000, 0x100_2000));
    }

    #[test]
    fn truncated_foreign_and_odd_elves_are_refused() {
        let img = fake_elf(4096);
        let short = parse(&img, 1000).unwrap_err().to_string();
        assert!(short.contains("truncated: segment 0"), "{short}");
        let tiny = parse(&img[..20], 20).unwrap_err().to_string();
        assert!(tiny.contains("truncated"), "{tiny}");
        let mut arm = img.clone();
        arm[18] = 183;
        assert!(parse(&arm, 4096)
            .unwrap_err()
            .to_string()
            .contains("machine 183"));
        let mut class32 = img.clone();
        class32[4] = 1;
        assert!(parse(&class32, 4096)
            .unwrap_err()
            .to_string()
            .contains("64-bit"));
        let mut far_entry = img;
        far_entry[24..32].copy_from_slice(&0x10u64.to_le_bytes());
        let n = far_entry.len() as u64;
        assert!(parse(&far_entry, n)
            .unwrap_err()
            .to_string()
            .contains("entry"));
    }
}

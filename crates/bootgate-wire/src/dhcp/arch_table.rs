//! Client system architecture types (DHCP option 93, RFC 4578 section 2.1 and the IANA "Processor
//! Architecture Types" registry), folded into the families a boot server keeps a program for.

/// A family of clients that run the same boot program. The discriminant is the slot index in
/// [`super::BootTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArchFamily {
    /// x86 BIOS (0).
    Bios = 0,
    /// x86 (IA32) UEFI (6; 15 over HTTP).
    EfiIa32,
    /// x64 UEFI (7; 9 "EFI BC" is x64 in practice; 16 over HTTP; 17 EBC over HTTP).
    EfiX64,
    /// ARM 32-bit UEFI (10; 18 over HTTP).
    Arm32,
    /// ARM 64-bit UEFI (11; 19 over HTTP).
    Arm64,
    /// RISC-V 32-bit UEFI (25; 26 over HTTP).
    RiscV32,
    /// RISC-V 64-bit UEFI (27; 28 over HTTP).
    RiscV64,
    /// RISC-V 128-bit UEFI (29; 30 over HTTP).
    RiscV128,
    /// LoongArch 32-bit UEFI (37; 38 over HTTP).
    LoongArch32,
    /// LoongArch 64-bit UEFI (39; 40 over HTTP).
    LoongArch64,
}

impl ArchFamily {
    /// Number of families (slots of a [`super::BootTable`]).
    pub const COUNT: usize = 10;

    /// Every family, in slot order.
    pub const ALL: [ArchFamily; Self::COUNT] = [
        Self::Bios,
        Self::EfiIa32,
        Self::EfiX64,
        Self::Arm32,
        Self::Arm64,
        Self::RiscV32,
        Self::RiscV64,
        Self::RiscV128,
        Self::LoongArch32,
        Self::LoongArch64,
    ];

    /// The stable name used in config keys and counter names (`bios`, `efi_x64`, `arm64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Bios => "bios",
            Self::EfiIa32 => "efi_ia32",
            Self::EfiX64 => "efi_x64",
            Self::Arm32 => "arm32",
            Self::Arm64 => "arm64",
            Self::RiscV32 => "riscv32",
            Self::RiscV64 => "riscv64",
            Self::RiscV128 => "riscv128",
            Self::LoongArch32 => "loongarch32",
            Self::LoongArch64 => "loongarch64",
        }
    }

    /// The family named `name` (see [`ArchFamily::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == name)
    }

    /// Slot index.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// How a client boots: PXE (TFTP boot program) or UEFI HTTP Boot (a URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArchClass {
    pub family: ArchFamily,
    /// An "... boot from HTTP" code (UEFI HTTP Boot).
    pub http: bool,
}

/// Classifies an option 93 code; `None` for codes no family here covers (Itanium, PowerPC,
/// U-Boot, s390, MIPS, Sunway, BIOS-over-HTTP, unassigned...).
pub fn classify(code: u16) -> Option<ArchClass> {
    use ArchFamily::*;
    let (family, http) = match code {
        0 => (Bios, false),
        6 => (EfiIa32, false),
        7 | 9 => (EfiX64, false),
        10 => (Arm32, false),
        11 => (Arm64, false),
        15 => (EfiIa32, true),
        16 | 17 => (EfiX64, true),
        18 => (Arm32, true),
        19 => (Arm64, true),
        25 => (RiscV32, false),
        26 => (RiscV32, true),
        27 => (RiscV64, false),
        28 => (RiscV64, true),
        29 => (RiscV128, false),
        30 => (RiscV128, true),
        37 => (LoongArch32, false),
        38 => (LoongArch32, true),
        39 => (LoongArch64, false),
        40 => (LoongArch64, true),
        _ => return None,
    };
    Some(ArchClass { family, http })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_slots_are_dense() {
        for (i, f) in ArchFamily::ALL.into_iter().enumerate() {
            assert_eq!(f.index(), i);
            assert_eq!(ArchFamily::from_name(f.name()), Some(f));
        }
        assert_eq!(ArchFamily::from_name("x86"), None);
    }

    #[test]
    fn iana_codes() {
        let c = |code| classify(code).map(|a| (a.family, a.http));
        assert_eq!(c(0), Some((ArchFamily::Bios, false)));
        assert_eq!(c(9), Some((ArchFamily::EfiX64, false)));
        assert_eq!(c(16), Some((ArchFamily::EfiX64, true)));
        assert_eq!(c(19), Some((ArchFamily::Arm64, true)));
        assert_eq!(c(27), Some((ArchFamily::RiscV64, false)));
        assert_eq!(c(40), Some((ArchFamily::LoongArch64, true)));
        for unknown in [1, 2, 12, 20, 21, 31, 35, 41, 0xffff] {
            assert_eq!(c(unknown), None, "code {unknown}");
        }
    }
}

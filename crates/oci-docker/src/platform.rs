//! The platform of a daemon's images, from what the daemon says of itself.

use oci_types::Platform;

/// The platform of images for a daemon whose `GET /version` says `os` and `arch` (`GOOS` and
/// `GOARCH`) and whose `GET /info` says `machine` (`Architecture`: the kernel's machine name, as
/// `uname -m` prints it).
///
/// The variant comes from the machine name where it says it for sure: `armv5*`, `armv6*`,
/// `armv7*` for 32-bit ARM, and `v8` for 64-bit ARM (whose kernels report the CPU
/// architecture as 8 even on ARMv9 CPUs, which containerd and so Docker turn into `v8`). Every
/// other machine gives no variant: amd64 has none in a machine name, and `armv8l` (a 32-bit
/// userland on a 64-bit CPU) is left for the caller's normalisation to take as `arm/v7`.
pub(crate) fn platform(os: &str, arch: &str, machine: &str) -> Platform {
    let platform = Platform::new(os, arch);
    match variant(arch, machine) {
        Some(variant) => platform.with_variant(variant),
        None => platform,
    }
}

fn variant(arch: &str, machine: &str) -> Option<&'static str> {
    let machine = machine.to_ascii_lowercase();
    match arch {
        "arm" => {
            let version = machine.strip_prefix("armv")?;
            match version.bytes().next()? {
                b'5' => Some("v5"),
                b'6' => Some("v6"),
                b'7' => Some("v7"),
                _ => None,
            }
        }
        "arm64" => {
            matches!(machine.as_str(), "aarch64" | "arm64" | "armv8" | "armv8b").then_some("v8")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(os: &str, arch: &str, machine: &str, expected: &str) {
        let got = platform(os, arch, machine);
        assert_eq!(got.to_string(), expected, "{os} {arch} {machine}");
        assert_eq!(Some(got), Platform::parse(expected).ok());
    }

    #[test]
    fn mapping() {
        // Docker reports the kernel's machine name in `/info`, podman the GOARCH.
        check("linux", "amd64", "x86_64", "linux/amd64");
        check("linux", "amd64", "amd64", "linux/amd64");
        check("linux", "arm64", "aarch64", "linux/arm64/v8");
        check("linux", "arm64", "arm64", "linux/arm64/v8");
        check("linux", "arm", "armv7l", "linux/arm/v7");
        check("linux", "arm", "armv6l", "linux/arm/v6");
        check("linux", "arm", "armv5tel", "linux/arm/v5");
        check("linux", "arm", "ARMV7L", "linux/arm/v7");
        check("linux", "arm", "armv8l", "linux/arm");
        check("linux", "arm", "arm", "linux/arm");
        check("linux", "arm", "", "linux/arm");
        check("linux", "arm64", "", "linux/arm64");
        check("linux", "386", "i686", "linux/386");
        check("linux", "s390x", "s390x", "linux/s390x");
        check("linux", "ppc64le", "ppc64le", "linux/ppc64le");
        check("linux", "riscv64", "riscv64", "linux/riscv64");
        // A machine name that contradicts the architecture adds nothing.
        check("linux", "amd64", "aarch64", "linux/amd64");
        check("linux", "arm64", "armv7l", "linux/arm64");
        check("windows", "amd64", "x86_64", "windows/amd64");
    }
}

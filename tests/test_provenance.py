"""provenance.py: what a host record says, from cpuinfo files of the two architectures."""
import platform

from sptf_ray.provenance import host_info, package_versions

X86 = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse4_2 fma avx avx2 avx512f sha_ni
processor\t: 1
model name\t: another CPU
flags\t\t: fpu
"""
ARM = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm sve
CPU implementer\t: 0x41
"""


def test_x86_cpu_model_and_isa_of_the_first_cpu(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text(X86)
    info = host_info(str(f))
    assert info["cpu"] == "AMD EPYC 7B13"
    assert info["isa"] == ["sse4_2", "fma", "avx", "avx2", "avx512f"]  # sha_ni is not one that picks kernels
    assert info["machine"] == platform.machine() and info["cpus"] >= 1 and info["node"] == platform.node()


def test_arm_features_and_a_missing_model_name(tmp_path):
    f = tmp_path / "cpuinfo"
    f.write_text(ARM)
    info = host_info(str(f))
    assert info["isa"] == ["asimd", "sve"]
    assert info["cpu"] == (platform.processor() or "unknown")


def test_unreadable_cpuinfo_gives_an_empty_record_not_an_error(tmp_path):
    info = host_info(str(tmp_path / "missing"))
    assert info["isa"] == [] and info["cpu"] == (platform.processor() or "unknown")


def test_versions_name_the_installed_packages():
    import numpy

    v = package_versions()
    assert v["numpy"] == numpy.__version__ and v["python"] == platform.python_version()


def test_a_benchmark_host_line_names_the_cpu_its_isa_and_the_versions(tmp_path):
    from sptf_ray.provenance import host_line

    f = tmp_path / "cpuinfo"
    f.write_text(X86)
    line = host_line(str(f))
    assert line.startswith("host: AMD EPYC 7B13 (") and "sse4_2, fma, avx, avx2, avx512f" in line
    assert f"numba {package_versions()['numba']}" in line
    assert "no listed ISA extensions" in host_line(str(tmp_path / "missing"))

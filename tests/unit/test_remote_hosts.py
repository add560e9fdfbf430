"""The hosts file (docs/nightly.md, "The hosts file"): every bad input one clear line naming the
file, the host and the key, before anything connects; defaults; paths relative to the file."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dumpbed.errors import DumpbedError, InfraError
from dumpbed.remote import ssh
from dumpbed.remote.hosts import DEFAULT_WORKDIR, Host, load_hosts
from dumpbed.remote.prepare import Prepared, require_kvm, wheel_identity


@pytest.fixture
def keys(tmp_path):
    """A hosts file's directory with a key and a known_hosts file (their content is not read here)."""
    (tmp_path / "id").write_text("key")
    (tmp_path / "known").write_text("")
    return tmp_path


def write(directory: Path, text: str) -> Path:
    path = directory / "hosts.toml"
    path.write_text(text)
    return path


GOOD = """
[defaults]
user = "ci"
key_file = "id"
known_hosts = "known"

[hosts.kvm1]
address = "kvm1.lab.example"

[hosts.kvm-2]
address = "10.0.0.2"
port = 2222
slots = 3
workdir = "/srv/dumpbed"
user = "other"
"""


def test_a_good_file_with_defaults_and_relative_paths(keys):
    first, second = load_hosts(write(keys, GOOD))
    assert first == Host(name="kvm1", address="kvm1.lab.example", port=22, user="ci", key_file=keys / "id",
                         known_hosts=keys / "known", slots=1, workdir=DEFAULT_WORKDIR)
    assert (second.name, second.port, second.slots, second.workdir, second.user) == \
        ("kvm-2", 2222, 3, "/srv/dumpbed", "other")
    assert second.key_file.is_absolute() and second.key_file == keys / "id"


def test_tilde_is_the_controllers_home(keys, monkeypatch):
    monkeypatch.setenv("HOME", str(keys))
    hosts = load_hosts(write(keys, """
[hosts.a]
address = "a"
user = "u"
key_file = "~/id"
known_hosts = "~/known"
workdir = "~/stays-for-the-host"
"""))
    assert hosts[0].key_file == keys / "id" and hosts[0].workdir == "~/stays-for-the-host"


def test_to_dict_round_trips_through_json(keys):
    for host in load_hosts(write(keys, GOOD)):
        assert Host.from_dict(json.loads(json.dumps(host.to_dict()))) == host
    prepared = Prepared(host=host, python="/w/dumpbed-0.1.0-0123456789abcdef/venv/bin/python",
                        probe={"kvm": {"usable": False, "reason": "/dev/kvm: No such file or directory"}})
    assert Prepared.from_dict(json.loads(json.dumps(prepared.to_dict()))) == prepared
    assert prepared.workdir == "/w"


BASE = '[hosts.h]\naddress = "a"\nuser = "u"\nkey_file = "id"\nknown_hosts = "known"\n'


@pytest.mark.parametrize("text, message", [
    ("", "hosts.toml: no hosts: add a [hosts.NAME] table per host"),
    ("[defaults]\nuser = 'u'\n", "hosts.toml: no hosts: add a [hosts.NAME] table per host"),
    ("[hosts]\n", "hosts.toml: no hosts: add a [hosts.NAME] table per host"),
    ("hosts = 3\n", "hosts.toml: no hosts: add a [hosts.NAME] table per host"),
    ("[host.h]\naddress = 'a'\n", "hosts.toml: unknown table or key 'host' (a hosts file has [defaults] and "
                                  "[hosts.NAME] tables)"),
    ("[hosts.h\n", "hosts.toml: not a valid TOML file: "),
    (BASE + "slot = 2\n", "hosts.toml: host h: unknown key 'slot' (the keys are address, port, user, key_file, "
                          "known_hosts, slots, workdir)"),
    ("[defaults]\npassword = 'x'\n" + BASE, "hosts.toml: [defaults]: unknown key 'password'"),
    (BASE.replace('address = "a"\n', ""), "hosts.toml: host h: address: missing (required, here or in [defaults])"),
    (BASE.replace('user = "u"\n', ""), "hosts.toml: host h: user: missing (required"),
    (BASE.replace('key_file = "id"\n', ""), "hosts.toml: host h: key_file: missing (required"),
    (BASE.replace('known_hosts = "known"\n', ""), "hosts.toml: host h: known_hosts: missing (required"),
    (BASE.replace('"id"', '"nope"'), "hosts.toml: host h: key_file: no such file: "),
    (BASE.replace('"known"', '"."'), "hosts.toml: host h: known_hosts: no such file: "),
    (BASE + "port = 0\n", "hosts.toml: host h: port: must be a whole number from 1 to 65535, not 0"),
    (BASE + "port = 65536\n", "hosts.toml: host h: port: must be a whole number from 1 to 65535, not 65536"),
    (BASE + "port = '22'\n", "hosts.toml: host h: port: must be a whole number from 1 to 65535, not '22'"),
    (BASE + "port = true\n", "hosts.toml: host h: port: must be a whole number from 1 to 65535, not True"),
    (BASE + "slots = 0\n", "hosts.toml: host h: slots: must be a whole number from 1 to 1024, not 0"),
    (BASE + "slots = 1.5\n", "hosts.toml: host h: slots: must be a whole number from 1 to 1024, not 1.5"),
    (BASE + "workdir = ''\n", "hosts.toml: host h: workdir: must be a non-empty string, not ''"),
    (BASE.replace('"a"', "7"), "hosts.toml: host h: address: must be a non-empty string, not 7"),
    (BASE.replace('"a"', '"a b"'), "hosts.toml: host h: address: not a host name or IP address: 'a b'"),
    (BASE.replace('"a"', '"-oProxyCommand=x"'), "hosts.toml: host h: address: not a host name or IP address"),
    (BASE.replace("[hosts.h]", '[hosts."a b"]'), "hosts.toml: host 'a b': bad name: letters, digits"),
    (BASE.replace("[hosts.h]", '[hosts."-x"]'), "hosts.toml: host '-x': bad name"),
    ("[hosts]\nh = 3\n", "hosts.toml: host h: must be a table ([hosts.h])"),
    ("defaults = 3\n" + BASE, "hosts.toml: defaults: must be a table ([defaults])"),
])
def test_each_bad_input_is_one_clear_line(keys, text, message):
    with pytest.raises(DumpbedError) as caught:
        load_hosts(write(keys, text))
    got = str(caught.value)
    assert "\n" not in got and not isinstance(caught.value, InfraError)
    assert got.startswith(str(keys / message.split(":", 1)[0]) + ":") and message.split(":", 1)[1] in got, got


def test_a_missing_or_unreadable_hosts_file(tmp_path):
    with pytest.raises(DumpbedError, match=r"nope\.toml: no such hosts file$"):
        load_hosts(tmp_path / "nope.toml")
    with pytest.raises(DumpbedError, match=r": cannot read it: Is a directory$"):
        load_hosts(tmp_path)
    (tmp_path / "bin.toml").write_bytes(b"\xff\xfe[hosts]")
    with pytest.raises(DumpbedError, match=r"bin\.toml: not a valid TOML file"):
        load_hosts(tmp_path / "bin.toml")


def test_require_kvm_names_the_host_and_why():
    host = Host("kvm1", "a", 22, "u", Path("k"), Path("kh"), 1, "w")
    require_kvm(Prepared(host, "/w/d/venv/bin/python", {"kvm": {"usable": True, "reason": "/dev/kvm works"}}))
    with pytest.raises(DumpbedError) as caught:
        require_kvm(Prepared(host, "/w/d/venv/bin/python",
                             {"kvm": {"usable": False, "reason": "/dev/kvm: Permission denied"}}))
    assert str(caught.value) == "host kvm1: KVM is not usable: /dev/kvm: Permission denied (--require-kvm)"


def test_a_wheel_is_named_by_version_and_content(tmp_path):
    wheel = tmp_path / "dumpbed-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"zip")
    assert wheel_identity(wheel) == ("0.1.0", "4a70fe9aa6436e02")  # sha256(b"zip")[:16]
    with pytest.raises(DumpbedError, match="not a dumpbed wheel"):
        wheel_identity(tmp_path / "other-0.1.0-py3-none-any.whl")


def test_an_unloadable_client_key_is_a_clear_error(tmp_path):
    (tmp_path / "id").write_text("not a key\n")
    (tmp_path / "known").write_text("")
    host = Host("h", "127.0.0.1", 9, "u", tmp_path / "id", tmp_path / "known", 1, "w")
    with pytest.raises(DumpbedError, match=r"^host h: key_file .*/id: cannot load the private key") as caught:
        ssh.connect(host, timeout=2)
    assert not isinstance(caught.value, InfraError)


def test_the_output_tail_is_one_line():
    assert ssh.tail("a\n\nb\r\nc\nd\n") == "b | c | d"
    assert ssh.tail("") == "no output"

//! The copyright file and the maintainer scripts the package holds, verbatim.

pub(super) const COPYRIGHT: &str = "\
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: openclaw-egress
Source: https://github.com/openclaw/openclaw-egress

Files: *
Copyright: 2026 openclaw-egress contributors
License: MIT or Apache-2.0

License: MIT
 Permission is hereby granted, free of charge, to any person obtaining a copy
 of this software and associated documentation files (the \"Software\"), to
 deal in the Software without restriction, including without limitation the
 rights to use, copy, modify, merge, publish, distribute, sublicense, and/or
 sell copies of the Software, and to permit persons to whom the Software is
 furnished to do so, subject to the following conditions:
 .
 The above copyright notice and this permission notice shall be included in
 all copies or substantial portions of the Software.
 .
 THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
 IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
 FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
 AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
 LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING
 FROM, OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS
 IN THE SOFTWARE.

License: Apache-2.0
 On Debian systems, the full text of the Apache License, Version 2.0 can be
 found in /usr/share/common-licenses/Apache-2.0.
";

/// Enables the service (started at the next boot) but starts nothing now:
/// with no policy placed it would enforce nothing anyway, and starting a
/// BPF loader is the administrator's call.
pub(super) const POSTINST: &str = "\
#!/bin/sh
set -e
if [ \"$1\" = configure ]; then
    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
    fi
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper enable openclaw-egress.service >/dev/null || true
    fi
    echo \"openclaw-egress: place policies in /etc/openclaw-egress/policies, then\"
    echo \"  systemctl start openclaw-egress\"
fi
exit 0
";

/// Stops the daemon on removal; what it enforces stays pinned (a removal
/// does not open the workloads) until the package is purged.
pub(super) const PRERM: &str = "\
#!/bin/sh
set -e
if [ \"$1\" = remove ] && [ -d /run/systemd/system ]; then
    if command -v deb-systemd-invoke >/dev/null 2>&1; then
        deb-systemd-invoke stop openclaw-egress.service >/dev/null || true
    fi
fi
exit 0
";

/// On purge, the pins go: enforcement ends (what `openclaw-egress
/// uninstall` does, without the binary, which is gone by now).
pub(super) const POSTRM: &str = "\
#!/bin/sh
set -e
if [ \"$1\" = purge ]; then
    rm -rf /sys/fs/bpf/openclaw-egress /run/openclaw-egress
    if command -v deb-systemd-helper >/dev/null 2>&1; then
        deb-systemd-helper purge openclaw-egress.service >/dev/null || true
    fi
fi
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
exit 0
";

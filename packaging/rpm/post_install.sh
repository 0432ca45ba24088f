# openvpn-auth-duo %post ($1: 1 = install, 2 or more = upgrade).
# Let the unprivileged user OpenVPN drops to read the configuration (it holds the Duo secret key;
# the binary refuses it when world-readable or group/world-writable) and write the cache.
# Why these permissions: FILES in openvpn-auth-duo(8).
CONF=/etc/openvpn/auth-duo.toml
CACHE=/var/lib/openvpn-auth-duo
# The group OpenVPN drops to: "openvpn" (Fedora, RHEL/EPEL, openSUSE packages), else nobody's.
grp=nobody
for g in openvpn nobody nogroup; do
    if getent group "$g" >/dev/null 2>&1; then grp=$g; break; fi
done
if getent passwd openvpn >/dev/null 2>&1; then usr=openvpn; else usr=nobody; fi
# rpm installs the file root:root 0640; only that state is changed, so a group set by hand stays.
if [ -f "$CONF" ] && [ "$(stat -c %u:%g "$CONF")" = 0:0 ]; then
    chgrp "$grp" "$CONF" && chmod 0640 "$CONF"
fi
if [ ! -e "$CACHE" ]; then
    install -d -m 0700 -o "$usr" -g "$grp" "$CACHE"
fi
exit 0

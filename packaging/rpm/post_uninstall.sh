# openvpn-auth-duo %postun ($1: 0 = erase, 1 or more = upgrade).
# On erase the reconnect cache goes; rpm itself keeps a changed configuration as .rpmsave.
if [ "$1" = 0 ]; then
    rm -rf /var/lib/openvpn-auth-duo
fi
exit 0

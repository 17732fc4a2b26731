import pgwire as w, harness, ssl, time
def test_pg(pg, certs):
    c7 = w.connect("127.0.0.1", pg.port); c7.send(w.startup_message({"user":"alice","database":"app"})); print(c7.read_message())
    for n in (1, 4, 256, 0, 257):
        print(n, w.cancel_no_reply("127.0.0.1", pg.port, w.cancel_request(1234, b"k"*n)))
    ctx = w.client_context(min_version=ssl.TLSVersion.TLSv1, max_version=ssl.TLSVersion.TLSv1_1)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    try:
        w.ssl_request_tls("127.0.0.1", pg.port, ctx)
    except ssl.SSLError as e:
        print("tls11", repr(e))
    c8 = w.ssl_request_tls("127.0.0.1", pg.port, w.client_context(max_version=ssl.TLSVersion.TLSv1_2)); print(c8.sock.version(), c8.sock.compression())

/*
 * listen.h - the --listen address (listen.c).
 */
#ifndef SRV_LISTEN_H
#define SRV_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/*
 * Splits "HOST:PORT" / "[V6]:PORT" and resolves it into *ss (*len bytes);
 * host (hcap bytes) gets the host part. False with a message in err.
 */
bool srv_resolve_listen(const char *listen, struct sockaddr_storage *ss,
			socklen_t *len, char *host, size_t hcap, char *err,
			size_t ecap);
/* 127.0.0.0/8 or ::1. */
bool srv_is_loopback(const struct sockaddr_storage *ss);

#endif

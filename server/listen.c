/*
 * listen.c - the --listen address: parsing and resolving it, and whether
 * it is loopback (a non-loopback address needs a key or --insecure).
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <string.h>

#include "listen.h"

bool srv_resolve_listen(const char *listen, struct sockaddr_storage *ss,
			socklen_t *len, char *host, size_t hcap, char *err,
			size_t ecap)
{
	const char *colon = strrchr(listen, ':');
	struct addrinfo hints, *res;
	char port[16];
	size_t hl;
	int rc;

	if (!colon || !colon[1]) {
		snprintf(err, ecap, "--listen %s: expected HOST:PORT", listen);
		return false;
	}
	hl = (size_t)(colon - listen);
	if (hl >= hcap || strlen(colon + 1) >= sizeof port) {
		snprintf(err, ecap, "--listen %s: too long", listen);
		return false;
	}
	memcpy(host, listen, hl);
	host[hl] = '\0';
	if (host[0] == '[' && hl >= 2 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	snprintf(port, sizeof port, "%s", colon + 1);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	rc = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, ecap, "--listen %s: %s", listen,
			 gai_strerror(rc));
		return false;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
	return true;
}

bool srv_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
		return (ntohl(a->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
		return IN6_IS_ADDR_LOOPBACK(&a->sin6_addr);
	}
	return false;
}

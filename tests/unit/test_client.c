/*
 * test_client.c - the coordinator's HTTP client (server/client.c) against
 * a scripted server on loopback: answers framed by Content-Length or
 * chunked, arriving in pieces; a pooled connection the server closed,
 * sent again on a new one; a broken chunk size; no answer before the
 * deadline; nobody listening.
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client.h"
#include "testutil.h"

/* One scripted exchange: the pieces of an answer, sent one by one. */
struct script {
	int listen_fd, port;
	const char *pieces[4];
	int answers;	  /* connections to serve, each reading one request */
	bool close_after; /* close each connection after its answer */
	bool silent;	  /* read the request, never answer */
};

static void read_request(int fd)
{
	char buf[4096];
	size_t got = 0;

	while (got < sizeof buf - 1) {
		ssize_t r = recv(fd, buf + got, sizeof buf - 1 - got, 0);
		if (r <= 0)
			return;
		got += (size_t)r;
		buf[got] = '\0';
		if (strstr(buf, "\r\n\r\n"))
			return;
	}
}

static void *serve(void *arg)
{
	struct script *s = arg;

	for (int a = 0; a < s->answers; a++) {
		int fd = accept(s->listen_fd, NULL, NULL);
		if (fd < 0)
			return NULL;
		read_request(fd);
		if (s->silent) {
			read_request(fd); /* until the client gives up */
			close(fd);
			continue;
		}
		for (int i = 0; i < 4 && s->pieces[i]; i++) {
			if (send(fd, s->pieces[i], strlen(s->pieces[i]),
				 MSG_NOSIGNAL) < 0)
				break;
			usleep(20000); /* separate reads on the other side */
		}
		if (s->close_after)
			close(fd);
		else
			read_request(fd), close(fd);
	}
	return NULL;
}

static void start(struct script *s, pthread_t *t)
{
	struct sockaddr_in a;
	socklen_t len = sizeof a;

	s->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(s->listen_fd, (struct sockaddr *)&a, sizeof a),
			 0);
	ck_assert_int_eq(listen(s->listen_fd, 4), 0);
	getsockname(s->listen_fd, (struct sockaddr *)&a, &len);
	s->port = ntohs(a.sin_port);
	pthread_create(t, NULL, serve, s);
}

static struct srv_client *client_of(const struct script *s)
{
	char url[64], err[256];
	struct srv_client *c;

	snprintf(url, sizeof url, "http://127.0.0.1:%d", s->port);
	c = srv_client_create(url, "k", err, sizeof err);
	ck_assert_msg(c != NULL, "%s", err);
	return c;
}

START_TEST(chunked_answer_in_pieces)
{
	struct script s = {.answers = 1,
			   .close_after = true,
			   .pieces = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: "
				      "chunked\r\n\r\n5\r\nhel",
				      "lo\r\n6\r\n world\r\n", "0\r\n\r\n"}};
	struct srv_call call;
	pthread_t t;
	struct srv_client *c;

	start(&s, &t);
	c = client_of(&s);
	ck_assert_msg(srv_call(&call, c, "GET", "/x", NULL, NULL, 0, 5.0), "%s",
		      call.error);
	ck_assert_int_eq(call.status, 200);
	ck_assert_uint_eq(call.len, 11);
	ck_assert_str_eq(call.body, "hello world");
	srv_call_done(&call);
	pthread_join(t, NULL);
	close(s.listen_fd);
	srv_client_free(c);
}
END_TEST

START_TEST(pooled_connection_closed_is_sent_again)
{
	/* Two connections, each answering once and closing after a
	 * keep-alive answer: the second call finds its pooled connection
	 * closed and must go again on a new one. */
	struct script s = {
		.answers = 2,
		.close_after = true,
		.pieces = {"HTTP/1.1 202 Accepted\r\nContent-Length: 4"
			   "\r\n\r\nab",
			   "cd"}};
	struct srv_call call;
	pthread_t t;
	struct srv_client *c;

	start(&s, &t);
	c = client_of(&s);
	for (int i = 0; i < 2; i++) {
		ck_assert_msg(srv_call(&call, c, "POST", "/v1/updates",
				       "application/json", "{}", 2, 5.0),
			      "call %d: %s", i, call.error);
		ck_assert_int_eq(call.status, 202);
		ck_assert_str_eq(call.body, "abcd");
		srv_call_done(&call);
		usleep(50000); /* let the server's close reach the pool */
	}
	pthread_join(t, NULL);
	close(s.listen_fd);
	srv_client_free(c);
}
END_TEST

START_TEST(broken_chunk_size_fails)
{
	struct script s = {
		.answers = 1,
		.close_after = true,
		.pieces = {"HTTP/1.1 200 OK\r\nTransfer-Encoding: "
			   "chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"}};
	struct srv_call call;
	pthread_t t;
	struct srv_client *c;

	start(&s, &t);
	c = client_of(&s);
	ck_assert(!srv_call(&call, c, "GET", "/x", NULL, NULL, 0, 5.0));
	ck_assert_ptr_nonnull(strstr(call.error, "broken answer"));
	srv_call_done(&call);
	pthread_join(t, NULL);
	close(s.listen_fd);
	srv_client_free(c);
}
END_TEST

START_TEST(no_answer_before_the_deadline)
{
	struct script s = {.answers = 1, .silent = true};
	struct srv_call call;
	pthread_t t;
	struct srv_client *c;

	start(&s, &t);
	c = client_of(&s);
	ck_assert(!srv_call(&call, c, "GET", "/x", NULL, NULL, 0, 0.3));
	ck_assert_ptr_nonnull(strstr(call.error, "deadline"));
	srv_call_done(&call);
	pthread_join(t, NULL);
	close(s.listen_fd);
	srv_client_free(c);
}
END_TEST

START_TEST(nobody_listening_names_the_shard)
{
	struct script s = {0};
	struct srv_call call;
	pthread_t t;
	struct srv_client *c;

	start(&s, &t); /* serves no connection */
	pthread_join(t, NULL);
	close(s.listen_fd);
	c = client_of(&s);
	ck_assert(!srv_call(&call, c, "GET", "/x", NULL, NULL, 0, 2.0));
	ck_assert_ptr_nonnull(strstr(call.error, "127.0.0.1"));
	srv_call_done(&call);
	srv_client_free(c);
}
END_TEST

START_TEST(urls_are_checked)
{
	char err[256];

	ck_assert_ptr_null(
		srv_client_create("127.0.0.1:80", "", err, sizeof err));
	ck_assert_ptr_null(
		srv_client_create("http://host", "", err, sizeof err));
	ck_assert_ptr_null(
		srv_client_create("http://host:80/path", "", err, sizeof err));
	ck_assert_ptr_null(
		srv_client_create("http://:80", "", err, sizeof err));
	srv_client_free(
		srv_client_create("http://[::1]:80/", "", err, sizeof err));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("client");
	TCase *t = tcase_create("client");

	tcase_set_timeout(t, 30);
	tcase_add_test(t, chunked_answer_in_pieces);
	tcase_add_test(t, pooled_connection_closed_is_sent_again);
	tcase_add_test(t, broken_chunk_size_fails);
	tcase_add_test(t, no_answer_before_the_deadline);
	tcase_add_test(t, nobody_listening_names_the_shard);
	tcase_add_test(t, urls_are_checked);
	suite_add_tcase(s, t);
	return tu_run(s);
}

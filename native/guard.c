/*
 * guard PARENT_PID COMMAND [ARG...]: run COMMAND in this process group, and kill the whole group
 * when the process that started it dies (even by SIGKILL, which leaves it no chance to).
 *
 * The parent-death signal (prctl PR_SET_PDEATHSIG) reaches this process alone; its handler kills
 * the group (this process, COMMAND and whatever COMMAND started), so a pipeline or a shell's
 * children never write on after the process that owned their work is gone. Otherwise it is
 * COMMAND: the same standard streams and descriptors, its exit status, or its signal raised again.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

static void parent_died(int sig) {
  (void)sig;
  kill(0, SIGKILL);
  _exit(137);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: guard PARENT_PID COMMAND [ARG...]\n");
    return 127;
  }
  pid_t parent = (pid_t)strtol(argv[1], NULL, 10);
  /* the group it kills is its own: never its starter's */
  if (getpgrp() != getpid() && setpgid(0, 0) != 0) {
    fprintf(stderr, "guard: cannot make a process group: %s\n", strerror(errno));
    return 126;
  }
  struct sigaction action;
  memset(&action, 0, sizeof action);
  action.sa_handler = parent_died;
  sigemptyset(&action.sa_mask);
  sigaction(SIGUSR2, &action, NULL);
  if (prctl(PR_SET_PDEATHSIG, SIGUSR2) != 0 || getppid() != parent) parent_died(0);
  pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "%s: %s\n", argv[2], strerror(errno));
    return 126;
  }
  if (child == 0) {
    signal(SIGUSR2, SIG_DFL);
    execvp(argv[2], argv + 2);
    fprintf(stderr, "%s: %s\n", argv[2], strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
  }
  int status;
  while (waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) return 126;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  int sig = WTERMSIG(status);
  signal(sig, SIG_DFL);
  raise(sig);
  return 128 + sig;
}

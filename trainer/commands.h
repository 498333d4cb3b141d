/* commands.h: the trainer's commands; each takes the arguments after its name and returns the exit code. */
#ifndef TRAINER_COMMANDS_H
#define TRAINER_COMMANDS_H

int cmd_import(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_bench(int argc, char **argv);
/* `export onnx ...`: argv[0] is "onnx". */
int cmd_export_onnx(int argc, char **argv);
int cmd_export(int argc, char **argv);
/* `import images` (cmd_import_images.c), reached through cmd_import. */
int cmd_import_images(int argc, char **argv);
/* `predict` on image files (predict_images.c), reached through cmd_predict when no --data is given. */
int cmd_predict_images(int argc, char **argv);

#endif

using Kaiyuan.Cli;

return CommandLine.Run(args);
